"""The model: shapes, masking, both directions, pooling, .keras round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import TINY

from lstm_reviews.config import Config
from lstm_reviews.model.cell import LSTMCell
from lstm_reviews.model.classifier import (
    MaskedTimePooling,
    build_model,
    compile_model,
    learning_rate,
)

VOCAB = TINY["vocab_size"]


def tiny_config(**overrides) -> Config:
    return Config(**{**TINY, **overrides})


def reviews(batch=3, time=7, seed=0) -> np.ndarray:
    """<int32>[batch, time] of ids in [2, VOCAB), row b right-padded after time - b tokens."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB, size=(batch, time)).astype("int32")
    for row in range(batch):
        ids[row, time - row :] = 0
    return ids


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", ["max", "max_mean"])
def test_output_shape_and_layer_names(bidirectional, pooling):
    keras.utils.set_random_seed(0)
    model = build_model(tiny_config(bidirectional=bidirectional, pooling=pooling), VOCAB)
    logits = model(reviews())
    assert tuple(logits.shape) == (3, 1)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    names = [layer.name for layer in model.layers]
    recurrent = "bidirectional_lstm" if bidirectional else "lstm"
    assert names == ["token_ids", "embedding", recurrent, "pooling", "dropout", "logit"]
    layer = model.get_layer(recurrent)
    rnn = layer.forward_layer if bidirectional else layer
    assert isinstance(rnn.cell, LSTMCell)  # always our cell, never keras.layers.LSTM
    features = 4 * (2 if bidirectional else 1) * (2 if pooling == "max_mean" else 1)
    assert tuple(model.get_layer("pooling").output.shape) == (None, features)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", ["max", "max_mean"])
def test_trailing_padding_does_not_change_the_logit(bidirectional, pooling):
    keras.utils.set_random_seed(1)
    model = build_model(tiny_config(bidirectional=bidirectional, pooling=pooling), VOCAB)
    ids = reviews()
    padded = np.concatenate([ids, np.zeros((3, 25), "int32")], axis=1)
    np.testing.assert_allclose(model(ids), model(padded), atol=1e-5)
    # And the content matters: another review gives another logit.
    other = reviews(seed=5)
    assert not np.allclose(model(ids), model(other), atol=1e-5)


def test_backward_lstm_starts_with_its_own_weights():
    keras.utils.set_random_seed(2)
    model = build_model(tiny_config(bidirectional=True), VOCAB)
    layer = model.get_layer("bidirectional_lstm")
    forward = keras.ops.convert_to_numpy(layer.forward_layer.cell.kernel)
    backward = keras.ops.convert_to_numpy(layer.backward_layer.cell.kernel)
    assert not np.allclose(forward, backward)


def test_masked_max_pooling_ignores_padding_that_would_win():
    pool = MaskedTimePooling("max_mean")
    # Padding steps hold 9.0, larger than any real step: they must not win the max.
    inputs = np.array(
        [
            [[1.0, -2.0], [3.0, -4.0], [9.0, 9.0]],
            [[-1.0, 5.0], [9.0, 9.0], [9.0, 9.0]],
            [[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]],
        ],
        "float32",
    )
    mask = np.array([[True, True, False], [True, False, False], [False, False, False]])
    out = keras.ops.convert_to_numpy(pool(inputs, mask=mask))
    expected = [
        [3.0, -2.0, 2.0, -3.0],  # max, then mean, over the real steps
        [-1.0, 5.0, -1.0, 5.0],
        [0.0, 0.0, 0.0, 0.0],
    ]  # no real step: zeros, not the dtype's lowest value
    np.testing.assert_allclose(out, expected)
    # Keras' own layer lets the padding win, which is why ours exists.
    keras_max = keras.ops.convert_to_numpy(keras.layers.GlobalMaxPooling1D()(inputs))
    assert keras_max[0, 0] == 9.0


def test_unknown_pooling_mode_is_rejected():
    with pytest.raises(ValueError, match="pooling mode"):
        MaskedTimePooling("min")


@pytest.mark.slow
@pytest.mark.parametrize("bidirectional", [True, False])
def test_keras_file_round_trip_gives_identical_outputs(tmp_path, bidirectional):
    keras.utils.set_random_seed(3)
    config = tiny_config(bidirectional=bidirectional, pooling="max_mean")
    model = compile_model(build_model(config, VOCAB), config)
    ids = reviews()
    model.train_on_batch(ids, np.array([1, 0, 1], "float32"))  # weights off their initial values
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(ids)), keras.ops.convert_to_numpy(loaded(ids))
    )
    assert isinstance(loaded.get_layer("pooling"), MaskedTimePooling)


@pytest.mark.slow
@pytest.mark.parametrize("compute", ["float16", "bfloat16"])
def test_mixed_precision_keeps_the_logit_in_float32(compute):
    keras.mixed_precision.set_global_policy(f"mixed_{compute}")
    try:
        keras.utils.set_random_seed(4)
        config = tiny_config(batch_shapes="fixed")  # the cross_entropy metric of fixed shapes
        model = compile_model(build_model(config, VOCAB), config)
        logits = model(reviews())
        assert keras.backend.standardize_dtype(logits.dtype) == "float32"
        assert model.get_layer("embedding").compute_dtype == compute
        padded = np.concatenate([reviews(), np.zeros((3, 5), "int32")], axis=1)
        np.testing.assert_allclose(model(reviews()), model(padded), atol=1e-2)
        logs = model.train_on_batch(reviews(), np.array([1, 0, 1], "float32"), return_dict=True)
        assert np.isfinite(logs["loss"]) and logs["loss"] == pytest.approx(logs["cross_entropy"])
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_vocabulary_too_small_is_rejected():
    with pytest.raises(ValueError, match="vocab_size"):
        build_model(tiny_config(), 2)


def test_learning_rate_decays_along_a_cosine_to_a_tenth():
    config = tiny_config(learning_rate=2e-3, epochs=4, lr_decay=True)
    schedule = learning_rate(config, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 20, 40, 60)]
    np.testing.assert_allclose(rates[0], 2e-3, rtol=1e-6)
    np.testing.assert_allclose(rates[1], 2e-3 * (0.1 + 0.9 * 0.5), rtol=1e-5)  # halfway: cos = 0
    np.testing.assert_allclose(rates[2], 2e-4, rtol=1e-5)  # the end of the last epoch
    np.testing.assert_allclose(rates[3], 2e-4, rtol=1e-5)  # and no lower after it


def test_learning_rate_stays_constant_without_decay_or_known_steps():
    assert learning_rate(tiny_config(learning_rate=3e-3, lr_decay=False), 10) == 3e-3
    assert learning_rate(tiny_config(learning_rate=3e-3, lr_decay=True), 0) == 3e-3


def test_input_dropout_reaches_the_cell_of_both_directions():
    model = build_model(tiny_config(input_dropout=0.25, bidirectional=True), VOCAB)
    wrapper = model.get_layer("bidirectional_lstm")
    for rnn in (wrapper.forward_layer, wrapper.backward_layer):
        assert isinstance(rnn.cell, LSTMCell) and rnn.cell.dropout == 0.25
