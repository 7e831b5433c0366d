"""The gate model: the trained network rebuilt to show its gates, the one the gate view, the
memory ledger and the word report all read.

The run's model is never retrained. Beside it: the trained embedding, then per direction
RNN(its cell's twin with return_gates=True, lstm_reviews.model.variants.gates_twin) holding a
copy of that direction's trained weights (keras.layers.LSTM's layout is our LSTMCell's, so the
copy needs no conversion). The trained layer may be RNN(any of our cells) or keras.layers.LSTM,
alone or inside a concat-merged Bidirectional (found by model.classifier.recurrent_layer).

The network parts run through compiled Keras models (predict_on_batch), so this works on the
TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from lstm_reviews.data import batches
from lstm_reviews.model.cell import GATE_NAMES
from lstm_reviews.model.classifier import MaskedTimePooling
from lstm_reviews.model.layers import recurrent_layer
from lstm_reviews.model.variants import CELLS, gates_twin

DIRECTION_NAMES = ("forward", "backward")
_INPUT_NAMES = ("token_ids", "reversed_ids")


def check_cell(layer) -> None:
    """One of our cells (lstm_reviews.model.variants.CELLS), or Keras' LSTM with sigmoid gates and
    tanh content: the ledger's algebra holds. ValueError otherwise."""
    cell = getattr(layer, "cell", None)
    if isinstance(cell, tuple(CELLS.values())):
        return
    if not isinstance(cell, keras.layers.LSTMCell):
        raise ValueError(
            f"layer {layer.name!r} has a {type(cell).__name__}; expected one of "
            f"lstm_reviews' cells ({', '.join(CELLS)}) or keras.layers.LSTM"
        )
    activations = (
        keras.activations.serialize(cell.activation),
        keras.activations.serialize(cell.recurrent_activation),
    )
    if activations != ("tanh", "sigmoid"):
        raise ValueError(
            f"layer {layer.name!r} uses activations {activations}; "
            f"only ('tanh', 'sigmoid') fit the LSTM cell's algebra"
        )


def directions(model: keras.Model) -> tuple:
    """The trained recurrent layers: (forward,) or (forward, backward) for Bidirectional.

    Each is keras.layers.RNN(lstm_reviews LSTMCell) or keras.layers.LSTM; the model must hold
    exactly one recurrent layer (alone, or inside a concat-merged Bidirectional) returning
    sequences. ValueError otherwise.
    """
    layer = recurrent_layer(model)
    if isinstance(layer, keras.layers.Bidirectional):
        if layer.merge_mode != "concat":
            raise ValueError(
                f"Bidirectional layer {layer.name!r} merges with "
                f"{layer.merge_mode!r}; the ledger needs 'concat'"
            )
        layers = (layer.forward_layer, layer.backward_layer)
    else:
        layers = (layer,)
    for expected_backwards, direction in zip((False, True), layers):
        check_cell(direction)
        if bool(direction.go_backwards) != expected_backwards:
            raise ValueError(
                f"layer {direction.name!r} has go_backwards="
                f"{direction.go_backwards}; expected {expected_backwards}"
            )
        if not direction.return_sequences:
            raise ValueError(f"layer {direction.name!r} must return sequences (pooling reads them)")
    return layers


def embedding_layer(model: keras.Model):
    """The model's one Embedding, which must mask padding (ids == 0). ValueError otherwise."""
    embeddings = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    if len(embeddings) != 1 or not embeddings[0].mask_zero:
        raise ValueError(
            f"model {model.name!r} needs exactly one Embedding with mask_zero=True "
            f"(padding 0 must never be read)"
        )
    return embeddings[0]


def logit_head(model: keras.Model):
    """(pooling mode, v <float64>[P], bias float) of the pooling -> dropout -> Dense(1) head."""
    pooling = [layer for layer in model.layers if isinstance(layer, MaskedTimePooling)]
    if len(pooling) != 1:
        raise ValueError(f"model {model.name!r} needs exactly one MaskedTimePooling layer")
    try:
        logit = model.get_layer("logit")
    except ValueError:
        raise ValueError(f"model {model.name!r} has no layer named 'logit'") from None
    if (
        not isinstance(logit, keras.layers.Dense)
        or logit.units != 1
        or keras.activations.serialize(logit.activation) != "linear"
    ):
        raise ValueError("the 'logit' layer must be Dense(1) with no activation")
    weights = logit.get_weights()
    kernel = np.asarray(weights[0], dtype=np.float64)[:, 0]
    bias = float(weights[1][0]) if logit.use_bias else 0.0
    return pooling[0].mode, kernel, bias


def build_gate_model(model: keras.Model) -> keras.Model:
    """The trained embedding, then per direction RNN(its cell's twin with return_gates=True,
    variants.gates_twin) holding a copy of that direction's trained weights
    (keras.layers.LSTM's layout is our LSTMCell's).

    Inputs: "token_ids" <int32>[batch, time] right-padded with 0, and for a bidirectional
    model also "reversed_ids" <int32>[batch, time], each row's real tokens reversed (still
    right-padded), which the backward weights then read forwards. Outputs: one
    <float>[batch, time, 6 * units] per direction, [h, c, i, f, o, c̃] in reading order.
    """
    layers = directions(model)
    embedding = embedding_layer(model)
    inputs, outputs, copies = [], [], []
    for direction, layer, input_name in zip(DIRECTION_NAMES, layers, _INPUT_NAMES):
        trained = layer.cell
        # The variables' dtype (float32 under mixed_float16): gates for inspection need it.
        dtype = trained.variable_dtype
        cell = gates_twin(trained, dtype=dtype)
        rnn = keras.layers.RNN(cell, return_sequences=True, dtype=dtype, name=f"{direction}_gates")
        ids = keras.Input(shape=(None,), dtype="int32", name=input_name)
        # The trained embedding itself: its mask (ids != 0) keeps padding unread.
        outputs.append(rnn(embedding(ids)))
        inputs.append(ids)
        copies.append((cell, trained))
    for cell, trained in copies:
        cell.set_weights(trained.get_weights())  # the same layout, peepholes included
    return keras.Model(inputs, outputs, name="ledger_gates")


def as_batch(ids) -> tuple:
    """ids -> (ids <int32>[batch, time], lengths <int64>[batch], mask <bool>[batch, time])."""
    ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"ids must be <int>[batch, time] with time >= 1, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {ids.dtype}")
    ids = ids.astype(np.int32)
    mask = ids != 0
    lengths = mask.sum(axis=1)
    if not np.array_equal(mask, np.arange(ids.shape[1])[None, :] < lengths[:, None]):
        raise ValueError("ids must be right-padded: no 0 before a review's last real token")
    return ids, lengths, mask


def reverse_index(lengths, time: int) -> np.ndarray:
    """<int64>[batch, time]: position t -> L-1-t inside each row's L real tokens, t after.

    Its own inverse: it turns positions into backward reading steps and back.
    """
    t = np.arange(time)[None, :]
    length = np.asarray(lengths)[:, None]
    return np.where(t < length, length - 1 - t, t)


def take_along_time(array, index):
    """array <[batch, time, ...]> gathered along time by index <[batch, time]>."""
    index = index.reshape(index.shape + (1,) * (array.ndim - 2))
    return np.take_along_axis(array, index, axis=1)


def review_batches(reviews, batch_size):
    """Padded id batches of similar-length reviews: (ids <int32>[batch, time], row numbers),
    time a multiple of 16 (batches.by_length): a bounded number of shapes to compile."""
    reviews = [np.asarray(review).reshape(-1) for review in reviews]
    for k, review in enumerate(reviews):
        if review.size and not np.issubdtype(review.dtype, np.integer):
            raise ValueError(f"review {k} holds {review.dtype}, expected token ids")
        if np.any(review == 0):
            raise ValueError(f"review {k} holds the padding id 0")
    yield from batches.by_length(reviews, batch_size)


def predict_gates(gate_model: keras.Model, ids, lengths) -> list:
    """The gate model's outputs for a checked batch (as_batch), as NumPy in the model's dtype:
    one <float>[batch, time, 6 * units] per direction, each in its own reading order."""
    feeds = {"token_ids": ids}
    if len(gate_model.inputs) == 2:
        index = reverse_index(lengths, ids.shape[1])
        feeds["reversed_ids"] = np.take_along_axis(ids, index, axis=1)
    outputs = gate_model.predict_on_batch(feeds)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [ops.convert_to_numpy(output) for output in outputs]


def aligned_gates(outputs: list, lengths, mask) -> list:
    """predict_gates' outputs as one dict per direction, keys GATE_NAMES, each <float64>[batch,
    time, units] aligned to token positions (the backward direction's too), 0 at padding."""
    result = []
    for k, output in enumerate(outputs):
        output = np.asarray(output, dtype=np.float64)
        if k == 1:  # backward reading steps -> token positions
            output = take_along_time(output, reverse_index(lengths, output.shape[1]))
        output = np.where(mask[..., None], output, 0.0)
        result.append(dict(zip(GATE_NAMES, np.split(output, len(GATE_NAMES), axis=-1))))
    return result


def gates(model: keras.Model, ids, gate_model: keras.Model | None = None) -> list:
    """Per direction, the gates and states at every token position.

    ids: <int32>[batch, time] right-padded with 0 (or one review <int32>[time]).
    gate_model: build_gate_model(model), to reuse over many calls.
    Returns one dict per direction (forward, then backward), keys GATE_NAMES ("h", "c",
    "input_gate", "forget_gate", "output_gate", "candidate"), each <float64>[batch, time,
    units]; entry [b, t] is the step that reads token t (the backward one too), 0 at padding.
    """
    ids, lengths, mask = as_batch(ids)
    if gate_model is None:
        gate_model = build_gate_model(model)
    return aligned_gates(predict_gates(gate_model, ids, lengths), lengths, mask)


def model_logits(model, ids):
    """The model's logits <float64>[batch] for ids <int32>[batch, time], dropout off."""
    logits = ops.convert_to_numpy(model.predict_on_batch(ids))
    return np.asarray(logits, dtype=np.float64).reshape(-1)
