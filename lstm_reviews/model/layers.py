"""Finding the classifier's layers by what they are, not by name: the model built here, one
loaded from an older model.keras, and a notebook's hand-made model all answer alike."""

from __future__ import annotations

import keras


def recurrent_layer(model: keras.Model):
    """The model's one recurrent layer: keras.layers.RNN (keras.layers.LSTM included) or
    the Bidirectional around one. ValueError unless there is exactly one."""
    recurrent = [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Bidirectional, keras.layers.RNN))
    ]
    if len(recurrent) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(recurrent)} recurrent layers "
            f"(RNN, LSTM or Bidirectional); expected exactly one"
        )
    return recurrent[0]
