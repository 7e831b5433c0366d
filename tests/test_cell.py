"""The gate-by-gate LSTMCell equals keras.layers.LSTM, forward and backward, on any backend.

Every parity test draws fresh random weights (each gate block different), so a cell that
mixed up two gates would fail; `test_swapped_gate_blocks_break_parity` shows that it does.
Runs under whatever KERAS_BACKEND is set; tests/test_backends.py reruns it under the others.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from helpers import (
    BATCH,
    FLOAT32_UNDER_TORCH,
    INPUT_DIM,
    TIME,
    TOLERANCE,
    UNITS,
    _float64_error,
    _gradients,
    _inputs,
    _max_diff,
    _numpy,
    _precision,
    _randomize,
    numpy_lstm,
)
from keras import ops

from lstm_reviews.model.cell import GATE_NAMES, LSTMCell, split_gates

BACKEND = keras.backend.backend()
# All of it runs again under JAX, and the tests marked torch_rerun under PyTorch
# (tests/test_backends.py).
pytestmark = pytest.mark.jax_rerun


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    with _precision(request.param):
        yield request.param


def _pair(dtype, direction, seed=0, bidirectional=False, **rnn_kwargs):
    """RNN(LSTMCell) and keras.layers.LSTM, built, with the same random weights.

    direction: "keras_to_ours" randomizes Keras' layer and copies into ours, or the reverse.
    """
    ours = keras.layers.RNN(LSTMCell(UNITS, dtype=dtype), dtype=dtype, **rnn_kwargs)
    theirs = keras.layers.LSTM(UNITS, dtype=dtype, **rnn_kwargs)
    if bidirectional:
        ours = keras.layers.Bidirectional(ours, dtype=dtype)
        theirs = keras.layers.Bidirectional(theirs, dtype=dtype)
    for layer in (ours, theirs):
        layer.build((None, TIME, INPUT_DIM))
    source, target = (theirs, ours) if direction == "keras_to_ours" else (ours, theirs)
    _randomize(source, seed)
    target.set_weights(source.get_weights())
    for copied, original in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(copied, original)
    return ours, theirs


# ---------------------------------------------------------------- forward parity with Keras


@pytest.mark.parametrize(
    "direction, rnn_kwargs",
    [
        ("keras_to_ours", {}),
        ("ours_to_keras", {}),
        ("keras_to_ours", {"return_sequences": True}),
        ("ours_to_keras", {"return_state": True}),
        ("keras_to_ours", {"return_sequences": True, "return_state": True, "go_backwards": True}),
    ],
    ids=["last-keras_to_ours", "last-ours_to_keras", "sequences", "state", "backwards"],
)
def test_equals_keras_lstm(dtype, direction, rnn_kwargs):
    ours, theirs = _pair(dtype, direction, **rnn_kwargs)
    x = _inputs(1, dtype)
    ours_out, theirs_out = ours(x), theirs(x)
    if rnn_kwargs.get("return_state"):
        assert len(_numpy(ours_out)) == 3  # output, h, c
    assert _numpy(ours_out)[0].dtype == np.dtype(dtype)
    assert _max_diff(ours_out, theirs_out) <= TOLERANCE[dtype]


@pytest.mark.parametrize("direction", ["keras_to_ours", "ours_to_keras"])
def test_equals_keras_lstm_inside_bidirectional(dtype, direction):
    ours, theirs = _pair(dtype, direction, bidirectional=True, return_sequences=True)
    x = _inputs(2, dtype)
    out = ours(x)
    assert tuple(out.shape) == (BATCH, TIME, 2 * UNITS)
    assert _max_diff(out, theirs(x)) <= TOLERANCE[dtype]


def _embedding_model(dtype, recurrent, vocab=11):
    ids = keras.Input(shape=(None,), dtype="int32")
    embedded = keras.layers.Embedding(vocab, INPUT_DIM, mask_zero=True, dtype=dtype)(ids)
    return keras.Model(ids, recurrent(embedded))


@FLOAT32_UNDER_TORCH
def test_equals_keras_lstm_with_right_padded_mask(dtype):
    kwargs = {"return_sequences": True, "return_state": True, "dtype": dtype}
    ours = _embedding_model(dtype, keras.layers.RNN(LSTMCell(UNITS, dtype=dtype), **kwargs))
    theirs = _embedding_model(dtype, keras.layers.LSTM(UNITS, **kwargs))
    _randomize(theirs, 3)
    ours.set_weights(theirs.get_weights())
    ids = np.random.default_rng(4).integers(1, 11, size=(BATCH, TIME)).astype("int32")
    lengths = [TIME, 4, 2, 1]
    for row, length in enumerate(lengths):
        ids[row, length:] = 0  # right padding
    ours_out, theirs_out = ours(ids), theirs(ids)
    assert _max_diff(ours_out, theirs_out) <= TOLERANCE[dtype]

    # The mask really reached the cell: a padded row ends in the state of its unpadded prefix.
    _, h, c = _numpy(ours_out)
    for row in (1, 3):
        length = lengths[row]
        _, h_alone, c_alone = _numpy(ours(ids[row : row + 1, :length]))
        np.testing.assert_allclose(h[row], h_alone[0], rtol=0, atol=TOLERANCE[dtype])
        np.testing.assert_allclose(c[row], c_alone[0], rtol=0, atol=TOLERANCE[dtype])
    _, h_unmasked, _ = _numpy(ours(np.where(ids == 0, 1, ids)))
    assert np.max(np.abs(h_unmasked[1:] - h[1:])) > 1e-3


# ---------------------------------------------------------------- gradients


@FLOAT32_UNDER_TORCH
@pytest.mark.parametrize(
    "rnn_kwargs",
    [{}, {"return_sequences": True, "go_backwards": True}],
    ids=["last", "sequences_backwards"],
)
def test_gradients_equal_keras_lstm(dtype, rnn_kwargs):
    ours, theirs = _pair(dtype, "keras_to_ours", seed=5, **rnn_kwargs)
    x = _inputs(6, dtype)
    out_shape = (BATCH, TIME, UNITS) if rnn_kwargs else (BATCH, UNITS)
    upstream = np.random.default_rng(7).standard_normal(out_shape).astype(dtype)
    assert [v.path.split("/")[-1] for v in ours.trainable_variables] == [
        v.path.split("/")[-1] for v in theirs.trainable_variables
    ]
    ours_grads, theirs_grads = _gradients(ours, x, upstream), _gradients(theirs, x, upstream)
    assert len(ours_grads) == 4  # inputs, kernel, recurrent_kernel, bias
    for ours_grad, theirs_grad in zip(ours_grads, theirs_grads):
        assert ours_grad.shape == theirs_grad.shape
        assert np.max(np.abs(ours_grad)) > 1e-3  # a real gradient, not an all-zero one
        assert np.max(np.abs(ours_grad - theirs_grad)) <= TOLERANCE[dtype]


# ---------------------------------------------------------------- independent NumPy reference


@pytest.mark.torch_rerun
def test_matches_independent_numpy_reference():
    tolerance = 1e-10 if _float64_error() < 1e-14 else 1e-6
    if BACKEND == "tensorflow":
        assert tolerance == 1e-10  # TensorFlow computes float64 throughout
    with _precision("float64"):
        layer = keras.layers.RNN(
            LSTMCell(UNITS, return_gates=True, dtype="float64"),
            return_sequences=True,
            dtype="float64",
        )
        layer.build((None, TIME, INPUT_DIM))
        weights = _randomize(layer, 8)
        x = _inputs(9, "float64")
        gates = {k: ops.convert_to_numpy(v) for k, v in split_gates(layer(x), UNITS).items()}
    reference = numpy_lstm(x, *weights)
    for name in GATE_NAMES:
        np.testing.assert_allclose(
            gates[name], reference[name], rtol=0, atol=tolerance, err_msg=name
        )


@pytest.mark.parametrize(
    "first, second", [(0, 1), (1, 2), (2, 3), (0, 3)], ids=["i<->f", "f<->c", "c<->o", "i<->o"]
)
def test_swapped_gate_blocks_break_parity(first, second):
    """The parity checks have teeth: exchanging two gates' kernel columns is caught."""
    ours, theirs = _pair("float32", "keras_to_ours", seed=10, return_sequences=True)
    x = _inputs(11, "float32")
    assert _max_diff(ours(x), theirs(x)) <= TOLERANCE["float32"]

    kernel, recurrent_kernel, bias = ours.get_weights()
    blocks = np.split(kernel, 4, axis=1)
    blocks[first], blocks[second] = blocks[second], blocks[first]
    ours.set_weights([np.concatenate(blocks, axis=1), recurrent_kernel, bias])
    assert _max_diff(ours(x), theirs(x)) > 1e-2
    swapped = numpy_lstm(
        x.astype("float64"),
        np.concatenate(blocks, axis=1).astype("float64"),
        recurrent_kernel.astype("float64"),
        bias.astype("float64"),
    )["h"]
    reference = numpy_lstm(
        x.astype("float64"),
        kernel.astype("float64"),
        recurrent_kernel.astype("float64"),
        bias.astype("float64"),
    )["h"]
    assert np.max(np.abs(swapped - reference)) > 1e-2


# ---------------------------------------------------------------- dropout


def _dropped(dropout, recurrent_dropout, seed, calls=1, training=True):
    """Which units had their gate input zeroed, per call: list of <bool>[batch, time, units].

    The input gate is wired to see one dropped vector alone: with dropout, i_t's kernel block
    is the identity and its recurrent block zero, so z_i = (x_t * mask)[j] and i_t = 0.5
    exactly where the mask dropped unit j; with recurrent dropout the other way round
    (z_i = (h_{t-1} * mask)[j]). Also returns the input gate and x.
    """
    cell = LSTMCell(
        UNITS, dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed, return_gates=True
    )
    layer = keras.layers.RNN(cell, return_sequences=True)
    layer.build((None, TIME, UNITS))
    kernel, recurrent_kernel, bias = _randomize(layer, 12)
    see_input = dropout > 0
    kernel[:, :UNITS] = np.eye(UNITS) if see_input else 0.0
    recurrent_kernel[:, :UNITS] = 0.0 if see_input else np.eye(UNITS)
    bias[:UNITS] = 0.0
    layer.set_weights([kernel, recurrent_kernel, bias])
    rng = np.random.default_rng(13)
    # |x| >= 0.5, so a kept input moves i_t well away from 0.5.
    x = (
        rng.choice([-1.0, 1.0], size=(BATCH, TIME, UNITS))
        * rng.uniform(0.5, 1.5, size=(BATCH, TIME, UNITS))
    ).astype("float32")
    results = []
    for _ in range(calls):
        input_gate = ops.convert_to_numpy(
            split_gates(layer(x, training=training), UNITS)["input_gate"]
        )
        results.append((np.abs(input_gate - 0.5) < 1e-6, input_gate))
    return results, x


@pytest.mark.parametrize("which", ["dropout", "recurrent_dropout"])
def test_dropout_mask_is_fixed_over_time_and_fresh_per_call(which):
    rates = {"dropout": 0.0, "recurrent_dropout": 0.0, which: 0.5}
    [(first, _), (second, _)], _ = _dropped(
        rates["dropout"], rates["recurrent_dropout"], seed=14, calls=2
    )
    steps = slice(0, None) if which == "dropout" else slice(1, None)  # h_{-1} = 0 is no signal
    first, second = first[:, steps], second[:, steps]
    assert first[:, 0].any() and not first[:, 0].all()
    # Same units dropped at every time step of a sequence ...
    assert (first == first[:, :1]).all()
    assert (second == second[:, :1]).all()
    # ... but a new mask on the next call.
    assert (first[:, 0] != second[:, 0]).any()


def test_dropout_scales_kept_inputs_by_one_over_keep_rate():
    [(dropped, input_gate)], x = _dropped(0.5, 0.0, seed=15)
    logit = np.log(input_gate / (1 - input_gate))
    np.testing.assert_allclose(logit[~dropped], 2.0 * x[~dropped], rtol=1e-4, atol=1e-4)


def test_dropout_is_off_outside_training():
    [(dropped, _)], _ = _dropped(0.5, 0.0, seed=16, training=False)
    assert not dropped.any()
    ours = keras.layers.RNN(
        LSTMCell(UNITS, dropout=0.5, recurrent_dropout=0.5, seed=1), return_sequences=True
    )
    plain = keras.layers.RNN(LSTMCell(UNITS), return_sequences=True)
    for layer in (ours, plain):
        layer.build((None, TIME, INPUT_DIM))
    _randomize(plain, 17)
    ours.set_weights(plain.get_weights())
    x = _inputs(18, "float32")
    np.testing.assert_array_equal(_numpy(ours(x, training=False))[0], _numpy(plain(x))[0])
    assert _max_diff(ours(x, training=True), plain(x)) > 1e-3


def test_input_dropout_equals_keras_lstm_dropout_with_the_same_seed():
    """Keras draws one input mask per sequence from the seed; so do we, so outputs agree.

    (With recurrent_dropout > 0 Keras switches to one mask per gate; ours keeps one mask
    shared by the four gates, so only input dropout is compared.)
    """
    kwargs = {"dropout": 0.4, "seed": 19}
    ours = keras.layers.RNN(LSTMCell(UNITS, **kwargs), return_sequences=True)
    theirs = keras.layers.LSTM(UNITS, return_sequences=True, **kwargs)
    for layer in (ours, theirs):
        layer.build((None, TIME, INPUT_DIM))
    _randomize(theirs, 20)
    ours.set_weights(theirs.get_weights())
    x = _inputs(21, "float32")
    ours_train, theirs_train = ours(x, training=True), theirs(x, training=True)
    assert _max_diff(ours_train, theirs_train) <= TOLERANCE["float32"]
    assert _max_diff(ours_train, ours(x, training=False)) > 1e-3


# ---------------------------------------------------------------- return_gates


def test_return_gates_outputs_h_c_and_gates_in_range():
    plain = keras.layers.RNN(LSTMCell(UNITS), return_sequences=True)
    gated = keras.layers.RNN(
        LSTMCell(UNITS, return_gates=True), return_sequences=True, return_state=True
    )
    for layer in (plain, gated):
        layer.build((None, TIME, INPUT_DIM))
    _randomize(plain, 22)
    gated.set_weights(plain.get_weights())
    x = _inputs(23, "float32")
    # With return_gates the first state is the whole last output; the second is c.
    outputs, last_output, c_final = _numpy(gated(x))
    assert outputs.shape == (BATCH, TIME, len(GATE_NAMES) * UNITS)
    parts = {name: ops.convert_to_numpy(v) for name, v in split_gates(outputs, UNITS).items()}
    assert list(parts) == list(GATE_NAMES)
    np.testing.assert_array_equal(parts["h"], _numpy(plain(x))[0])
    np.testing.assert_array_equal(outputs[:, -1], last_output)
    np.testing.assert_array_equal(parts["c"][:, -1], c_final)
    for name in ("input_gate", "forget_gate", "output_gate"):
        assert ((parts[name] > 0) & (parts[name] < 1)).all(), name
    assert ((parts["candidate"] > -1) & (parts["candidate"] < 1)).all()
    assert (parts["candidate"] < 0).any() and (parts["candidate"] > 0).any()


def test_return_gates_with_a_padding_mask_holds_the_last_real_step():
    """Padded steps repeat the last real step's output, on every backend (JAX takes the
    held output from the first state, hence the cell's [output, c] state with gates)."""
    kwargs = {"return_sequences": True}
    plain = _embedding_model("float32", keras.layers.RNN(LSTMCell(UNITS), **kwargs))
    gated = _embedding_model(
        "float32", keras.layers.RNN(LSTMCell(UNITS, return_gates=True), **kwargs)
    )
    _randomize(plain, 27)
    gated.set_weights(plain.get_weights())
    ids = np.random.default_rng(28).integers(1, 11, size=(BATCH, TIME)).astype("int32")
    lengths = [TIME, 5, 3, 1]
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    outputs = _numpy(gated(ids))[0]
    h_plain = _numpy(plain(ids))[0]
    np.testing.assert_allclose(outputs[..., :UNITS], h_plain, rtol=0, atol=1e-6)
    for row, length in enumerate(lengths):
        if row == 2:
            alone = _numpy(gated(ids[row : row + 1, :length]))[0][0]
            np.testing.assert_allclose(outputs[row, :length], alone, rtol=0, atol=1e-6)
        held = np.broadcast_to(outputs[row, length - 1], outputs[row, length:].shape)
        np.testing.assert_array_equal(outputs[row, length:], held)


def test_split_gates_rejects_a_wrong_width():
    with pytest.raises(
        ValueError, match=r"expected a last dimension of 24 \(6 x 4 units\), got 20"
    ):
        split_gates(np.zeros((2, 20), "float32"), 4)


# ---------------------------------------------------------------- config, validation, saving


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"units": 0}, "`units` must be a positive integer, got 0"),
        ({"units": -3}, "got -3"),
        ({"units": 2.5}, "got 2.5"),
        ({"units": True}, "got True"),
        ({"units": 4, "dropout": 1.0}, "`dropout` must be a number in [0, 1), got 1.0"),
        ({"units": 4, "dropout": -0.1}, "got -0.1"),
        ({"units": 4, "dropout": "0.5"}, "got '0.5'"),
        (
            {"units": 4, "recurrent_dropout": 1.5},
            "`recurrent_dropout` must be a number in [0, 1), got 1.5",
        ),
    ],
)
def test_bad_arguments_are_named_in_the_error(kwargs, message):
    with pytest.raises(ValueError) as error:
        LSTMCell(**kwargs)
    assert message in str(error.value)


def test_numpy_integer_units_are_accepted():
    assert LSTMCell(np.int64(3)).get_config()["units"] == 3


def test_config_round_trip():
    cell = LSTMCell(
        5,
        use_bias=False,
        kernel_initializer="he_normal",
        unit_forget_bias=False,
        dropout=0.2,
        recurrent_dropout=0.1,
        return_gates=True,
        seed=3,
        name="my_cell",
    )
    config = cell.get_config()
    assert LSTMCell.from_config(config).get_config() == config
    restored = keras.layers.deserialize(keras.layers.serialize(cell))
    assert isinstance(restored, LSTMCell) and restored.get_config() == config
    assert keras.saving.get_registered_name(LSTMCell) == "lstm_reviews>LSTMCell"


def test_unit_forget_bias_starts_forget_gate_at_one():
    layer = keras.layers.RNN(LSTMCell(3, bias_initializer="zeros"))
    layer.build((None, None, 2))
    np.testing.assert_array_equal(layer.get_weights()[2], [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])


def test_model_saves_and_loads_in_safe_mode(tmp_path):
    ids = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(20, INPUT_DIM, mask_zero=True)(ids)
    x = keras.layers.Bidirectional(
        keras.layers.RNN(
            LSTMCell(UNITS, dropout=0.2, recurrent_dropout=0.1, seed=4), return_sequences=True
        )
    )(x)
    x = keras.layers.RNN(LSTMCell(UNITS, return_gates=True))(x)
    model = keras.Model(ids, keras.layers.Dense(1)(x))
    _randomize(model, 24)
    tokens = np.random.default_rng(25).integers(0, 20, size=(BATCH, TIME)).astype("int32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True by default
    np.testing.assert_array_equal(_numpy(loaded(tokens))[0], _numpy(model(tokens))[0])
    cells = [layer.cell for layer in loaded.layers if isinstance(layer, keras.layers.RNN)]
    assert len(cells) == 1 and isinstance(cells[0], LSTMCell) and cells[0].return_gates
    backward = loaded.layers[2].backward_layer.cell
    assert isinstance(backward, LSTMCell) and backward.recurrent_dropout == 0.1


# ---------------------------------------------------------------- usability


@pytest.mark.slow
def test_bidirectional_with_gates_trains_a_step():
    """Bidirectional(RNN(LSTMCell)) fits like any Keras layer (here one quick epoch)."""
    ids = keras.Input(shape=(TIME,), dtype="int32")
    x = keras.layers.Embedding(20, INPUT_DIM, mask_zero=True)(ids)
    x = keras.layers.Bidirectional(
        keras.layers.RNN(LSTMCell(UNITS, dropout=0.1, recurrent_dropout=0.1, seed=5))
    )(x)
    model = keras.Model(ids, keras.layers.Dense(1)(x))
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(26)
    tokens = rng.integers(1, 20, size=(32, TIME)).astype("int32")
    labels = (tokens[:, 0] > 10).astype("float32")  # learnable from the first token
    losses = model.fit(tokens, labels, epochs=8, batch_size=8, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.torch_rerun
def test_runs_on_the_requested_backend():
    """tests/test_backends.py reruns this module with KERAS_BACKEND set; make sure it took."""
    requested = os.environ.get("KERAS_BACKEND")
    if requested:
        assert BACKEND == requested
    assert BACKEND in ("tensorflow", "jax", "torch")
