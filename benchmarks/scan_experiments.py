"""Two ways to make the LSTM's time loop cheaper, timed by bench_cell.py against our layer.

Neither is in the model: on 2 CPU cores both were slower than Bidirectional(RNN(LSTMCell))
under TensorFlow (the default backend), so they stay here, where the device check times
them on a GPU (figures: benchmarks/README.md).

- ProjectedRNN(ProjectedInputsLSTMCell): x·W + b for every step as one product over
  <float>[batch, time, input_dim] before the loop, so the loop keeps only h_{t-1}·U and the
  gates (Keras' own JAX GRU does this).
- FusedBidirectionalLSTM: both directions in one `keras.ops.scan`, stacked on a leading axis
  of 2, so the loop runs `time` steps instead of `2 * time`.

Both take the weights of our layer (`copy_weights`) and must predict what it predicts;
bench_cell.py checks that before it times anything. No dropout, no return_gates: speed only.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from lstm_reviews.model.cell import LSTMCell


# Registered: Bidirectional rebuilds its backward layer from the forward one's config.
@keras.saving.register_keras_serializable(package="bench_cell")
class ProjectedInputsLSTMCell(LSTMCell):
    """LSTMCell whose `call` receives x_t·W + b (from ProjectedRNN) instead of x_t."""

    def _preactivations(self, inputs, states, training):
        h_tm1 = self._h_part(states[0])
        return inputs + ops.matmul(h_tm1, self.recurrent_kernel), states[1]


@keras.saving.register_keras_serializable(package="bench_cell")
class ProjectedRNN(keras.layers.RNN):
    """keras.layers.RNN(ProjectedInputsLSTMCell(units)) with the input product before the loop.

    Call: sequences <float>[batch, time, input_dim], mask <bool>[batch, time]."""

    def call(self, sequences, initial_state=None, mask=None, training=False):
        projected = ops.matmul(sequences, self.cell.kernel) + self.cell.bias
        return super().call(projected, initial_state=initial_state, mask=mask, training=training)


class FusedBidirectionalLSTM(keras.layers.Layer):
    """What Bidirectional(RNN(LSTMCell(units))) returns (last outputs, concatenated) under a
    right-padded mask, in one loop.

    Call: inputs <float>[batch, time, input_dim], mask <bool>[batch, time]
    -> <float>[batch, 2 * units].
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.supports_masking = True

    def build(self, input_shape):
        width = 4 * self.units
        self.kernel = self.add_weight(shape=(2, input_shape[-1], width), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(2, self.units, width), name="recurrent")
        self.bias = self.add_weight(shape=(2, 1, width), name="bias", initializer="zeros")

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        # Time first, the backward direction reversed: <float>[time, 2, batch, input_dim].
        steps = ops.transpose(inputs, (1, 0, 2))
        steps = ops.stack([steps, ops.flip(steps, axis=0)], axis=1)
        keep = ops.transpose(ops.cast(mask, inputs.dtype), (1, 0))
        keep = ops.expand_dims(ops.stack([keep, ops.flip(keep, axis=0)], axis=1), -1)
        zeros = ops.zeros((2, ops.shape(inputs)[0], self.units), dtype=inputs.dtype)

        def step(carry, xs):
            h, c = carry
            x_t, keep_t = xs  # <float>[2, batch, input_dim], <float>[2, batch, 1]
            z = ops.matmul(x_t, self.kernel) + ops.matmul(h, self.recurrent_kernel) + self.bias
            z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
            c_new = ops.sigmoid(z_f) * c + ops.sigmoid(z_i) * ops.tanh(z_c)
            h_new = ops.sigmoid(z_o) * ops.tanh(c_new)
            # A padding step keeps the state, as Keras' masked loop does.
            return (keep_t * h_new + (1 - keep_t) * h, keep_t * c_new + (1 - keep_t) * c), None

        (h, _), _ = ops.scan(step, (zeros, zeros), (steps, keep))
        return ops.concatenate([h[0], h[1]], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * self.units)


def copy_weights(source: keras.Model, target: keras.Model):
    """Gives `target` (built with one of the layers above) the weights of `source`, the same
    model with our layer: RNN(LSTMCell), or Bidirectional of it."""
    target.get_layer("embedding").set_weights(source.get_layer("embedding").get_weights())
    target.get_layer("logit").set_weights(source.get_layer("logit").get_weights())
    ours, theirs = source.get_layer("recurrent"), target.get_layer("recurrent")
    if not isinstance(theirs, FusedBidirectionalLSTM):
        theirs.set_weights(ours.get_weights())  # the same cell weights, the same layout
        return
    cells = (ours.forward_layer.cell, ours.backward_layer.cell)
    for name in ("kernel", "recurrent_kernel", "bias"):
        pair = np.stack([ops.convert_to_numpy(getattr(cell, name)) for cell in cells])
        variable = getattr(theirs, name)
        variable.assign(pair.reshape(variable.shape))
