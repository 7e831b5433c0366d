"""An LSTM cell written out gate by gate, numerically equal to `keras.layers.LSTM`.

One step, for an input x_t <float>[batch, input_dim] and the previous state
(h_{t-1}, c_{t-1}) <float>[batch, units] each:

    z_t  = x_t · W + h_{t-1} · U + b        one fused product: four gates at once
    i_t  = sigmoid(z_t[i])                  input gate: how much new content to write
    f_t  = sigmoid(z_t[f])                  forget gate: how much old cell state to keep
    c̃_t  = tanh(z_t[c])                     candidate: the content that could be written
    o_t  = sigmoid(z_t[o])                  output gate: how much of the cell to show
    c_t  = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t        cell state
    h_t  = o_t ⊙ tanh(c_t)                  hidden state, the step's output

The weights keep Keras' layout, so `cell.set_weights(keras_lstm.get_weights())` and
back work with no conversion:

    kernel            W  <float>[input_dim, 4 * units]   columns: i | f | c | o
    recurrent_kernel  U  <float>[units, 4 * units]       columns: i | f | c | o
    bias              b  <float>[4 * units]              forget part starts at 1

With `return_gates=True` the step output is not h_t alone but
concat([h_t, c_t, i_t, f_t, o_t, c̃_t]) <float>[batch, 6 * units], for inspection;
`split_gates` names the six parts. The state is then [that whole output, c_t]
(h_t is its first `units` columns) rather than [h_t, c_t]: Keras' JAX loop carries a
masked step's output over from the first state, so the two must have the same shape.
"""

from __future__ import annotations

import numbers

import keras
from keras import ops

# The RNN layer clears the cached per-sequence dropout masks only of cells that are
# instances of this mixin, and Keras does not export it publicly.
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

GATE_NAMES = ("h", "c", "input_gate", "forget_gate", "output_gate", "candidate")


class GatedCell(keras.layers.Layer, DropoutRNNCell):
    """What every cell of this package shares: its arguments, their checks, the dropout seed,
    the output size and get_config. LSTMCell and the variants (lstm_reviews.model.variants) add
    their weights, their state and their `call`.

    Args:
        units: size of h_t (and c_t), a positive int.
        use_bias: whether to add b.
        kernel_initializer, recurrent_initializer, bias_initializer: as in Keras' cells
            (glorot_uniform, orthogonal, zeros).
        dropout: rate dropped from x_t; one mask per sequence, as in Keras.
        recurrent_dropout: rate dropped from h_{t-1} where it enters the gates; one mask
            per sequence.
        return_gates: also output c_t and the gates at every step (GATE_NAMES).
        seed: seed of the dropout masks.
    """

    def __init__(
        self,
        units,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        dropout=0.0,
        recurrent_dropout=0.0,
        return_gates=False,
        seed=None,
        **kwargs,
    ):
        # numbers.Integral also admits NumPy integers; bool is an int but never meant.
        if not isinstance(units, numbers.Integral) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"`units` must be a positive integer, got {units!r}")
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            # Type first: comparing a string such as "0.5" would raise a bare TypeError.
            is_number = isinstance(rate, numbers.Real) and not isinstance(rate, bool)
            if not is_number or not 0.0 <= rate < 1.0:
                raise ValueError(f"`{name}` must be a number in [0, 1), got {rate!r}")
        super().__init__(**kwargs)
        self.units = int(units)  # a plain int keeps get_config JSON-serializable
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.return_gates = return_gates
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.output_size = self.units * len(GATE_NAMES) if return_gates else self.units

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "dropout": self.dropout,
                "recurrent_dropout": self.recurrent_dropout,
                "return_gates": self.return_gates,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="lstm_reviews")
class LSTMCell(GatedCell):
    """One LSTM step, for use in `keras.layers.RNN` (and so in `Bidirectional`).

    Args: GatedCell's, and
        unit_forget_bias: start the forget gate's bias at 1, so the cell keeps its
            state early in training (Jozefowicz et al., 2015).
    """

    def __init__(
        self,
        units,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        dropout=0.0,
        recurrent_dropout=0.0,
        return_gates=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            units,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            return_gates=return_gates,
            seed=seed,
            **kwargs,
        )
        self.unit_forget_bias = unit_forget_bias
        self.state_size = [self.output_size, self.units]  # [h (or the whole output), c]

    # The weight blocks' order (columns of kernel, recurrent_kernel and bias): Keras' LSTM's.
    GATE_BLOCKS = ("i", "f", "c", "o")

    def build(self, input_shape):
        input_dim = input_shape[-1]
        width = len(self.GATE_BLOCKS) * self.units
        self.kernel = self.add_weight(
            shape=(input_dim, width), name="kernel", initializer=self.kernel_initializer
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
        )
        if self.use_bias:
            self.bias = self.add_weight(shape=(width,), name="bias", initializer=self._initial_bias)
        else:
            self.bias = None

    def _initial_bias(self, shape, dtype=None):
        """b, one block per GATE_BLOCKS entry, with b_f = 1 when unit_forget_bias."""
        if not self.unit_forget_bias:
            return self.bias_initializer(shape, dtype=dtype)
        before = self.GATE_BLOCKS.index("f") * self.units
        after = shape[0] - before - self.units
        blocks = [
            self.bias_initializer((before,), dtype=dtype) if before else None,
            keras.initializers.Ones()((self.units,), dtype=dtype),
            self.bias_initializer((after,), dtype=dtype) if after else None,
        ]
        return ops.concatenate([block for block in blocks if block is not None])

    def call(self, inputs, states, training=False):
        """inputs: <float>[batch, input_dim]; states: [h, c], each <float>[batch, units].

        With return_gates, states[0] is the previous output <float>[batch, 6 * units],
        which starts with h_{t-1}.
        """
        z, c_tm1 = self._preactivations(inputs, states, training)
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)

        input_gate = ops.sigmoid(z_i)  # i_t
        forget_gate = ops.sigmoid(z_f)  # f_t
        candidate = ops.tanh(z_c)  # c̃_t
        output_gate = ops.sigmoid(z_o)  # o_t
        c = forget_gate * c_tm1 + input_gate * candidate  # c_t
        h = output_gate * ops.tanh(c)  # h_t
        return self._step_result(h, c, input_gate, forget_gate, output_gate, candidate)

    def _preactivations(self, inputs, states, training):
        """(z_t = x_t·W + h_{t-1}·U + b <float>[batch, blocks * units], c_{t-1}), dropout
        applied: one input mask and one recurrent mask per sequence, as in Keras."""
        h_tm1 = self._h_part(states[0])  # previous hidden state
        c_tm1 = states[1]  # previous cell state

        if training and self.dropout > 0.0:
            inputs = inputs * self.get_dropout_mask(inputs)
        if training and self.recurrent_dropout > 0.0:
            # RNN draws this mask once per sequence, in the shape of states[0].
            h_tm1 = h_tm1 * self._h_part(self.get_recurrent_dropout_mask(states[0]))

        # All the pre-activations from one product each for x and h: fused is
        # 1.5x faster on a GPU than eight small products.
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_tm1, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        return z, c_tm1

    def _step_result(self, h, c, input_gate, forget_gate, output_gate, candidate):
        """(output, new states): h_t, or with return_gates all six parts in GATE_NAMES order."""
        if self.return_gates:
            output = ops.concatenate(
                [h, c, input_gate, forget_gate, output_gate, candidate], axis=-1
            )
        else:
            output = h
        return output, [output, c]

    def _h_part(self, first_state):
        """h <float>[batch, units] from states[0] (the whole output when return_gates)."""
        return first_state[:, : self.units] if self.return_gates else first_state

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, self.output_size), dtype=self.compute_dtype),
            ops.zeros((batch_size, self.units), dtype=self.compute_dtype),
        ]

    def get_config(self):
        config = super().get_config()
        config["unit_forget_bias"] = self.unit_forget_bias
        return config


def split_gates(outputs, units):
    """Names the parts of a `return_gates=True` output.

    outputs: <float>[..., 6 * units] (a step, or a sequence from RNN(return_sequences=True)).
    Returns a dict GATE_NAMES -> <float>[..., units].

    Example, with units=2 and one step of one review:
        outputs = [[h1, h2, c1, c2, i1, i2, f1, f2, o1, o2, g1, g2]]
        split_gates(outputs, 2)["forget_gate"] == [[f1, f2]]
    """
    if outputs.shape[-1] != units * len(GATE_NAMES):
        raise ValueError(
            f"expected a last dimension of {units * len(GATE_NAMES)} (6 x {units} units), "
            f"got {outputs.shape[-1]}"
        )
    return dict(zip(GATE_NAMES, ops.split(outputs, len(GATE_NAMES), axis=-1)))
