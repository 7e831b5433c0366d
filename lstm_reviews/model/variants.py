"""The textbook's variants of the LSTM cell, written out like lstm_reviews.model.cell, and the GRU.

Each is a Keras cell for `keras.layers.RNN` (and so `Bidirectional`), `keras.ops` only, with
the LSTMCell's arguments, dropout (one input and one recurrent mask per sequence, the
recurrent one on h_{t-1} where it enters the gates) and `return_gates`. Their weights keep
Keras' layouts, columns in blocks of `units`:

    peephole  kernel, recurrent_kernel, bias: i | f | c | o (the LSTM's), plus three
              diagonal peephole vectors p_i, p_f, p_o <float>[units] (Gers & Schmidhuber
              2000; tf.compat.v1's LSTMCell(use_peepholes=True) keeps them as vectors too)
    coupled   kernel, recurrent_kernel, bias: f | c | o, one gate block fewer
    gru       kernel, recurrent_kernel: z | r | h; bias <float>[2, 3 * units] (input and
              recurrent rows): keras.layers.GRU's layout with reset_after=True, its default

`return_gates=True` emits the LSTM's six parts [h, c, i, f, o, c̃] for all of them, so the
inspection and the memory ledger read every variant alike. The GRU has no separate cell and
no output gate; its update gate z_t plays the forget gate's part:

    h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ h̃_t    is    c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t

with c = h, f = z, i = 1 - z, c̃ = h̃, and h = c read out whole (o = 1, no tanh). So its
parts are [h, h, 1 - z, z, 1, h̃]; the reset gate r_t acts inside h̃_t only.

`CELLS` maps the names of `--cell` to the classes; `gates_twin` makes the inspection's copy.
"""

from __future__ import annotations

import keras
from keras import ops

from lstm_reviews.model.cell import GatedCell, LSTMCell


@keras.saving.register_keras_serializable(package="lstm_reviews")
class PeepholeLSTMCell(LSTMCell):
    """The LSTM whose gates also read the cell state (Gers & Schmidhuber 2000).

        z_t  = x_t · W + h_{t-1} · U + b                the LSTM's four pre-activations
        i_t  = sigmoid(z_t[i] + p_i ⊙ c_{t-1})          input gate, peeking at the old cell
        f_t  = sigmoid(z_t[f] + p_f ⊙ c_{t-1})          forget gate, peeking at the old cell
        c̃_t  = tanh(z_t[c])
        c_t  = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t
        o_t  = sigmoid(z_t[o] + p_o ⊙ c_t)              output gate, peeking at the NEW cell
        h_t  = o_t ⊙ tanh(c_t)

    The peephole weights p are diagonal: one <float>[units] vector per gate, each unit
    reading its own cell. They start at zero (peephole_initializer), so training starts from
    the standard LSTM and learns how much the gates should read the cell; with p = 0 the
    cell is LSTMCell exactly.
    """

    def __init__(self, units, peephole_initializer="zeros", **kwargs):
        super().__init__(units, **kwargs)
        self.peephole_initializer = keras.initializers.get(peephole_initializer)

    def build(self, input_shape):
        super().build(input_shape)
        self.input_peephole, self.forget_peephole, self.output_peephole = (
            self.add_weight(shape=(self.units,), name=name, initializer=self.peephole_initializer)
            for name in ("input_peephole", "forget_peephole", "output_peephole")
        )

    def call(self, inputs, states, training=False):
        z, c_tm1 = self._preactivations(inputs, states, training)
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)

        input_gate = ops.sigmoid(z_i + self.input_peephole * c_tm1)  # i_t
        forget_gate = ops.sigmoid(z_f + self.forget_peephole * c_tm1)  # f_t
        candidate = ops.tanh(z_c)  # c̃_t
        c = forget_gate * c_tm1 + input_gate * candidate  # c_t
        output_gate = ops.sigmoid(z_o + self.output_peephole * c)  # o_t
        h = output_gate * ops.tanh(c)  # h_t
        return self._step_result(h, c, input_gate, forget_gate, output_gate, candidate)

    def get_config(self):
        config = super().get_config()
        config["peephole_initializer"] = keras.initializers.serialize(self.peephole_initializer)
        return config


@keras.saving.register_keras_serializable(package="lstm_reviews")
class CoupledLSTMCell(LSTMCell):
    """The LSTM with coupled forget and input gates: it writes only where it forgets.

        z_t  = x_t · W + h_{t-1} · U + b      three pre-activations: f | c | o
        f_t  = sigmoid(z_t[f])                forget gate
        i_t  = 1 - f_t                        input gate, no weights of its own
        c̃_t  = tanh(z_t[c])
        c_t  = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t      a running average of candidates
        o_t  = sigmoid(z_t[o])
        h_t  = o_t ⊙ tanh(c_t)

    A quarter fewer recurrent weights than the LSTM; |c_t| ≤ 1 always.
    """

    GATE_BLOCKS = ("f", "c", "o")

    def call(self, inputs, states, training=False):
        z, c_tm1 = self._preactivations(inputs, states, training)
        z_f, z_c, z_o = ops.split(z, 3, axis=-1)

        forget_gate = ops.sigmoid(z_f)  # f_t
        input_gate = 1.0 - forget_gate  # i_t
        candidate = ops.tanh(z_c)  # c̃_t
        output_gate = ops.sigmoid(z_o)  # o_t
        c = forget_gate * c_tm1 + input_gate * candidate  # c_t
        h = output_gate * ops.tanh(c)  # h_t
        return self._step_result(h, c, input_gate, forget_gate, output_gate, candidate)


@keras.saving.register_keras_serializable(package="lstm_reviews")
class GRUCell(GatedCell):
    """The gated recurrent unit (Cho et al. 2014), in keras.layers.GRU's reset_after form.

        x_z | x_r | x_h = x_t · W + b_in             input pre-activations
        u_z | u_r | u_h = h_{t-1} · U + b_rec         recurrent pre-activations
        z_t  = sigmoid(x_z + u_z)                     update gate: how much old state to keep
        r_t  = sigmoid(x_r + u_r)                     reset gate: how much old state to consult
        h̃_t  = tanh(x_h + r_t ⊙ u_h)                  candidate
        h_t  = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ h̃_t        new state, the output

    Args: GatedCell's (no unit_forget_bias: Keras' GRU has none; the bias starts at 0).
    """

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        self.state_size = [self.output_size]  # [h (or the whole output)]

    def build(self, input_shape):
        width = 3 * self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], width), name="kernel", initializer=self.kernel_initializer
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
        )
        self.bias = (
            self.add_weight(shape=(2, width), name="bias", initializer=self.bias_initializer)
            if self.use_bias
            else None
        )

    def call(self, inputs, states, training=False):
        """inputs: <float>[batch, input_dim]; states: [h] <float>[batch, units] (with
        return_gates the previous output <float>[batch, 6 * units], which starts with h)."""
        h_tm1 = states[0][:, : self.units]
        h_tm1_for_gates = h_tm1
        if training and self.dropout > 0.0:
            inputs = inputs * self.get_dropout_mask(inputs)
        if training and self.recurrent_dropout > 0.0:
            mask = self.get_recurrent_dropout_mask(states[0])[:, : self.units]
            h_tm1_for_gates = h_tm1 * mask

        x = ops.matmul(inputs, self.kernel)
        u = ops.matmul(h_tm1_for_gates, self.recurrent_kernel)
        if self.use_bias:
            x, u = x + self.bias[0], u + self.bias[1]
        x_z, x_r, x_h = ops.split(x, 3, axis=-1)
        u_z, u_r, u_h = ops.split(u, 3, axis=-1)

        update_gate = ops.sigmoid(x_z + u_z)  # z_t
        reset_gate = ops.sigmoid(x_r + u_r)  # r_t
        candidate = ops.tanh(x_h + reset_gate * u_h)  # h̃_t
        h = update_gate * h_tm1 + (1.0 - update_gate) * candidate  # h_t

        if not self.return_gates:
            return h, [h]
        # The LSTM's parts (see the module docstring): c = h, i = 1 - z, f = z, o = 1.
        output = ops.concatenate(
            [h, h, 1.0 - update_gate, update_gate, ops.ones_like(h), candidate], axis=-1
        )
        return output, [output]

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.output_size), dtype=self.compute_dtype)]


# --cell's choices. The first is the default.
CELLS = {
    "lstm": LSTMCell,
    "peephole": PeepholeLSTMCell,
    "coupled": CoupledLSTMCell,
    "gru": GRUCell,
}


def gates_twin(trained_cell, dtype=None):
    """A new cell computing what `trained_cell` computes, with return_gates=True, dropout off,
    built for the same weights (copy them with set_weights(trained_cell.get_weights())).

    trained_cell: one of CELLS' classes, or keras.layers.LSTMCell (its layout is LSTMCell's).
    """
    if isinstance(trained_cell, keras.layers.LSTMCell):
        return LSTMCell(
            trained_cell.units, use_bias=trained_cell.use_bias, return_gates=True, dtype=dtype
        )
    config = trained_cell.get_config()
    config.update(return_gates=True, dropout=0.0, recurrent_dropout=0.0, name=None)
    if dtype is not None:
        config["dtype"] = dtype
    return type(trained_cell).from_config(config)
