"""The variants of lstm_reviews.model.variants: each equals its own equations and, where Keras has
the cell, Keras' layer; each works in the model, the inspection and the ledger.

Random weights throughout (every gate block different), so a swapped gate would fail.
Runs under whatever KERAS_BACKEND is set; tests/test_backends.py reruns it under the others.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import (
    BACKEND,
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
    _sigmoid,
    numpy_lstm,
)
from keras import ops

from lstm_reviews.config import CELL_TYPES, Config
from lstm_reviews.inspection import gate_model as gm
from lstm_reviews.inspection import ledger as lg
from lstm_reviews.inspection.gates import build_inspector, gate_trace
from lstm_reviews.model.cell import GATE_NAMES, LSTMCell, split_gates
from lstm_reviews.model.classifier import build_model
from lstm_reviews.model.variants import (
    CELLS,
    CoupledLSTMCell,
    GRUCell,
    PeepholeLSTMCell,
    gates_twin,
)

# All of it runs again under JAX, and the tests marked torch_rerun under PyTorch
# (tests/test_backends.py).
pytestmark = pytest.mark.jax_rerun
VARIANTS = ("peephole", "coupled", "gru")


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    with _precision(request.param):
        yield request.param


def _gru_pair(dtype, direction, seed=0, bidirectional=False, **rnn_kwargs):
    """RNN(GRUCell) and keras.layers.GRU (reset_after=True), built, same random weights."""
    ours = keras.layers.RNN(GRUCell(UNITS, dtype=dtype), dtype=dtype, **rnn_kwargs)
    theirs = keras.layers.GRU(UNITS, dtype=dtype, **rnn_kwargs)
    if bidirectional:
        ours = keras.layers.Bidirectional(ours, dtype=dtype)
        theirs = keras.layers.Bidirectional(theirs, dtype=dtype)
    for layer in (ours, theirs):
        layer.build((None, TIME, INPUT_DIM))
    source, target = (theirs, ours) if direction == "keras_to_ours" else (ours, theirs)
    _randomize(source, seed)
    target.set_weights(source.get_weights())
    return ours, theirs


def test_the_cell_flag_offers_every_cell():
    assert tuple(CELLS) == CELL_TYPES and CELL_TYPES[0] == Config().cell == "lstm"


# ---------------------------------------------------------------- the GRU against Keras' GRU


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
def test_gru_equals_keras_gru(dtype, direction, rnn_kwargs):
    ours, theirs = _gru_pair(dtype, direction, **rnn_kwargs)
    x = _inputs(1, dtype)
    ours_out = ours(x)
    if rnn_kwargs.get("return_state"):
        assert len(_numpy(ours_out)) == 2  # output, h: the GRU has no separate cell
    assert _numpy(ours_out)[0].dtype == np.dtype(dtype)
    assert _max_diff(ours_out, theirs(x)) <= TOLERANCE[dtype]


@pytest.mark.parametrize("direction", ["keras_to_ours", "ours_to_keras"])
def test_gru_equals_keras_gru_inside_bidirectional(dtype, direction):
    ours, theirs = _gru_pair(dtype, direction, bidirectional=True, return_sequences=True)
    x = _inputs(2, dtype)
    assert _max_diff(ours(x), theirs(x)) <= TOLERANCE[dtype]


@FLOAT32_UNDER_TORCH
def test_gru_equals_keras_gru_with_right_padded_mask(dtype):
    def model(recurrent):
        ids = keras.Input(shape=(None,), dtype="int32")
        embedded = keras.layers.Embedding(11, INPUT_DIM, mask_zero=True, dtype=dtype)(ids)
        return keras.Model(ids, recurrent(embedded))

    kwargs = {"return_sequences": True, "return_state": True, "dtype": dtype}
    ours = model(keras.layers.RNN(GRUCell(UNITS, dtype=dtype), **kwargs))
    theirs = model(keras.layers.GRU(UNITS, **kwargs))
    _randomize(theirs, 3)
    ours.set_weights(theirs.get_weights())
    ids = np.random.default_rng(4).integers(1, 11, size=(4, TIME)).astype("int32")
    for row, length in enumerate([TIME, 4, 2, 1]):
        ids[row, length:] = 0
    assert _max_diff(ours(ids), theirs(ids)) <= TOLERANCE[dtype]
    # The mask reached the cell: a padded row ends in its unpadded prefix's state.
    _, h = _numpy(ours(ids))
    _, h_alone = _numpy(ours(ids[1:2, :4]))
    np.testing.assert_allclose(h[1], h_alone[0], rtol=0, atol=TOLERANCE[dtype])
    _, h_unmasked = _numpy(ours(np.where(ids == 0, 1, ids)))
    assert np.max(np.abs(h_unmasked[1:] - h[1:])) > 1e-3


@FLOAT32_UNDER_TORCH
@pytest.mark.parametrize("rnn_kwargs", [{}, {"return_sequences": True, "go_backwards": True}])
def test_gru_gradients_equal_keras_gru(dtype, rnn_kwargs):
    ours, theirs = _gru_pair(dtype, "keras_to_ours", seed=5, **rnn_kwargs)
    x = _inputs(6, dtype)
    shape = (x.shape[0], TIME, UNITS) if rnn_kwargs else (x.shape[0], UNITS)
    upstream = np.random.default_rng(7).standard_normal(shape).astype(dtype)
    ours_grads, theirs_grads = _gradients(ours, x, upstream), _gradients(theirs, x, upstream)
    assert len(ours_grads) == 4  # inputs, kernel, recurrent_kernel, bias
    for ours_grad, theirs_grad in zip(ours_grads, theirs_grads):
        assert ours_grad.shape == theirs_grad.shape
        assert np.max(np.abs(ours_grad)) > 1e-3
        assert np.max(np.abs(ours_grad - theirs_grad)) <= TOLERANCE[dtype]


@pytest.mark.parametrize("first, second", [(0, 1), (1, 2), (0, 2)], ids=["z<->r", "r<->h", "z<->h"])
def test_swapped_gru_blocks_break_parity(first, second):
    ours, theirs = _gru_pair("float32", "keras_to_ours", seed=10, return_sequences=True)
    x = _inputs(11, "float32")
    kernel, recurrent_kernel, bias = ours.get_weights()
    blocks = np.split(kernel, 3, axis=1)
    blocks[first], blocks[second] = blocks[second], blocks[first]
    ours.set_weights([np.concatenate(blocks, axis=1), recurrent_kernel, bias])
    assert _max_diff(ours(x), theirs(x)) > 1e-2


# ---------------------------------------------------------------- the LSTM variants


def test_peephole_with_zero_peepholes_is_the_lstm_exactly():
    lstm = keras.layers.RNN(LSTMCell(UNITS, return_gates=True), return_sequences=True)
    peephole = keras.layers.RNN(PeepholeLSTMCell(UNITS, return_gates=True), return_sequences=True)
    for layer in (lstm, peephole):
        layer.build((None, TIME, INPUT_DIM))
    weights = _randomize(lstm, 20)
    # Its fresh peepholes are zero (peephole_initializer) and its other weights the LSTM's.
    assert all(not np.any(w) for w in peephole.get_weights()[3:])
    peephole.set_weights([*weights, *peephole.get_weights()[3:]])
    x = _inputs(21, "float32")
    np.testing.assert_array_equal(_numpy(peephole(x))[0], _numpy(lstm(x))[0])
    # ... and the peepholes are live: non-zero ones change every gate they feed.
    rng = np.random.default_rng(22)
    peephole.set_weights([*weights, *(rng.standard_normal(UNITS) for _ in range(3))])
    parts = {k: ops.convert_to_numpy(v) for k, v in split_gates(peephole(x), UNITS).items()}
    plain = {k: ops.convert_to_numpy(v) for k, v in split_gates(lstm(x), UNITS).items()}
    for gate in ("input_gate", "forget_gate", "output_gate"):
        assert np.max(np.abs(parts[gate] - plain[gate])) > 1e-3, gate


def test_peephole_weights_are_three_diagonal_vectors():
    cell = PeepholeLSTMCell(UNITS)
    keras.layers.RNN(cell).build((None, TIME, INPUT_DIM))
    names = [v.path.split("/")[-1] for v in cell.weights]
    assert names == [
        "kernel",
        "recurrent_kernel",
        "bias",
        "input_peephole",
        "forget_peephole",
        "output_peephole",
    ]
    assert [tuple(v.shape) for v in cell.weights[3:]] == [(UNITS,)] * 3


def test_coupled_cell_writes_only_what_it_forgets():
    layer = keras.layers.RNN(CoupledLSTMCell(UNITS, return_gates=True), return_sequences=True)
    layer.build((None, TIME, INPUT_DIM))
    kernel, recurrent_kernel, bias = layer.get_weights()
    # Three gate blocks (f, c, o), the forget bias starting at 1.
    assert kernel.shape == (INPUT_DIM, 3 * UNITS) and recurrent_kernel.shape == (UNITS, 3 * UNITS)
    np.testing.assert_array_equal(bias, np.r_[np.ones(UNITS), np.zeros(2 * UNITS)])
    _randomize(layer, 23)
    parts = split_gates(layer(_inputs(24, "float32")), UNITS)
    i, f = (ops.convert_to_numpy(parts[name]) for name in ("input_gate", "forget_gate"))
    np.testing.assert_allclose(i, 1.0 - f, rtol=0, atol=1e-7)
    assert np.all(np.abs(ops.convert_to_numpy(parts["c"])) <= 1.0)  # an average of tanh values


# ---------------------------------------------------------------- independent NumPy references


def numpy_peephole(x, kernel, recurrent_kernel, bias, p_i, p_f, p_o):
    """The peephole equations in float64, looping over time: i and f read c_{t-1}, o reads c_t."""
    units = recurrent_kernel.shape[0]
    W = [kernel[:, k * units : (k + 1) * units] for k in range(4)]
    U = [recurrent_kernel[:, k * units : (k + 1) * units] for k in range(4)]
    b = [bias[k * units : (k + 1) * units] for k in range(4)]
    h = c = np.zeros((x.shape[0], units))
    steps = {name: [] for name in GATE_NAMES}
    for t in range(x.shape[1]):
        x_t = x[:, t]
        i = _sigmoid(x_t @ W[0] + h @ U[0] + b[0] + p_i * c)
        f = _sigmoid(x_t @ W[1] + h @ U[1] + b[1] + p_f * c)
        c_tilde = np.tanh(x_t @ W[2] + h @ U[2] + b[2])
        c = f * c + i * c_tilde
        o = _sigmoid(x_t @ W[3] + h @ U[3] + b[3] + p_o * c)
        h = o * np.tanh(c)
        for name, value in zip(GATE_NAMES, (h, c, i, f, o, c_tilde)):
            steps[name].append(value)
    return {name: np.stack(values, axis=1) for name, values in steps.items()}


def numpy_coupled(x, kernel, recurrent_kernel, bias):
    """The coupled cell as the LSTM with an input gate of 1 - f: blocks f, c, o."""
    units = recurrent_kernel.shape[0]
    W = [kernel[:, k * units : (k + 1) * units] for k in range(3)]
    U = [recurrent_kernel[:, k * units : (k + 1) * units] for k in range(3)]
    b = [bias[k * units : (k + 1) * units] for k in range(3)]
    h = c = np.zeros((x.shape[0], units))
    steps = {name: [] for name in GATE_NAMES}
    for t in range(x.shape[1]):
        x_t = x[:, t]
        f = _sigmoid(x_t @ W[0] + h @ U[0] + b[0])
        i = 1.0 - f
        c_tilde = np.tanh(x_t @ W[1] + h @ U[1] + b[1])
        o = _sigmoid(x_t @ W[2] + h @ U[2] + b[2])
        c = f * c + i * c_tilde
        h = o * np.tanh(c)
        for name, value in zip(GATE_NAMES, (h, c, i, f, o, c_tilde)):
            steps[name].append(value)
    return {name: np.stack(values, axis=1) for name, values in steps.items()}


def numpy_gru(x, kernel, recurrent_kernel, bias):
    """The GRU (reset_after) in float64, in the LSTM's parts: c = h, i = 1 - z, f = z, o = 1."""
    units = recurrent_kernel.shape[0]
    W = [kernel[:, k * units : (k + 1) * units] for k in range(3)]
    U = [recurrent_kernel[:, k * units : (k + 1) * units] for k in range(3)]
    b_in = [bias[0, k * units : (k + 1) * units] for k in range(3)]
    b_rec = [bias[1, k * units : (k + 1) * units] for k in range(3)]
    h = np.zeros((x.shape[0], units))
    steps = {name: [] for name in GATE_NAMES}
    for t in range(x.shape[1]):
        x_t = x[:, t]
        z = _sigmoid(x_t @ W[0] + b_in[0] + h @ U[0] + b_rec[0])
        r = _sigmoid(x_t @ W[1] + b_in[1] + h @ U[1] + b_rec[1])
        h_tilde = np.tanh(x_t @ W[2] + b_in[2] + r * (h @ U[2] + b_rec[2]))
        h = z * h + (1.0 - z) * h_tilde
        for name, value in zip(GATE_NAMES, (h, h, 1.0 - z, z, np.ones_like(h), h_tilde)):
            steps[name].append(value)
    return {name: np.stack(values, axis=1) for name, values in steps.items()}


REFERENCES = {"peephole": numpy_peephole, "coupled": numpy_coupled, "gru": numpy_gru}


@pytest.mark.torch_rerun
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_independent_numpy_reference(variant):
    tolerance = 1e-10 if _float64_error() < 1e-14 else 1e-6  # see test_cell.py
    with _precision("float64"):
        cell = CELLS[variant](UNITS, return_gates=True, dtype="float64")
        layer = keras.layers.RNN(cell, return_sequences=True, dtype="float64")
        layer.build((None, TIME, INPUT_DIM))
        weights = _randomize(layer, 30)
        x = _inputs(31, "float64")
        parts = {k: ops.convert_to_numpy(v) for k, v in split_gates(layer(x), UNITS).items()}
    reference = REFERENCES[variant](x, *weights)
    for name in GATE_NAMES:
        np.testing.assert_allclose(parts[name], reference[name], rtol=0, atol=tolerance)
    # The references are not the plain LSTM: that one differs on the same weights.
    if variant == "peephole":
        plain = numpy_lstm(x, *weights[:3])["h"]
        assert np.max(np.abs(plain - reference["h"])) > 1e-2


# ---------------------------------------------------------------- as Keras cells


@pytest.mark.parametrize("variant", VARIANTS)
def test_dropout_is_per_sequence_and_off_outside_training(variant):
    layer = keras.layers.RNN(
        CELLS[variant](UNITS, dropout=0.5, recurrent_dropout=0.3, seed=3), return_sequences=True
    )
    plain = keras.layers.RNN(CELLS[variant](UNITS), return_sequences=True)
    for each in (layer, plain):
        each.build((None, TIME, INPUT_DIM))
    plain.set_weights(_randomize(layer, 40))
    x = _inputs(41, "float32")
    np.testing.assert_array_equal(_numpy(layer(x))[0], _numpy(plain(x))[0])  # inference
    first, second = _numpy(layer(x, training=True))[0], _numpy(layer(x, training=True))[0]
    assert np.max(np.abs(first - second)) > 1e-3  # fresh masks per call
    assert np.max(np.abs(first - _numpy(plain(x))[0])) > 1e-3
    # One input mask per sequence: with recurrent dropout off, the step output equals the
    # undropped cell fed x_t * m, m drawn once for the whole sequence.
    layer = keras.layers.RNN(CELLS[variant](UNITS, dropout=0.5, seed=3), return_sequences=True)
    layer.build((None, TIME, INPUT_DIM))
    layer.set_weights(plain.get_weights())
    dropped = _numpy(layer(x, training=True))[0]
    # A fresh cell of the same seed draws the same first mask (Keras' RNN drops the cached
    # one after each call).
    mask = ops.convert_to_numpy(
        CELLS[variant](UNITS, dropout=0.5, seed=3).get_dropout_mask(x[:, 0])
    )
    np.testing.assert_allclose(dropped, _numpy(plain(x * mask[:, None, :]))[0], atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_round_trip_and_safe_mode_load(variant, tmp_path):
    cell = CELLS[variant](UNITS, dropout=0.25, recurrent_dropout=0.1, seed=9, return_gates=True)
    again = CELLS[variant].from_config(cell.get_config())
    assert again.get_config() == cell.get_config() and type(again) is type(cell)
    ids = keras.Input(shape=(None,), dtype="int32")
    embedded = keras.layers.Embedding(11, INPUT_DIM, mask_zero=True)(ids)
    rnn = keras.layers.RNN(CELLS[variant](UNITS), return_sequences=True)
    model = keras.Model(ids, keras.layers.Bidirectional(rnn)(embedded))
    _randomize(model, 42)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    batch = np.random.default_rng(43).integers(1, 11, size=(3, TIME)).astype("int32")
    np.testing.assert_array_equal(_numpy(loaded(batch))[0], _numpy(model(batch))[0])


@pytest.mark.parametrize("variant", VARIANTS)
def test_gates_twin_computes_what_the_trained_cell_does(variant):
    trained = keras.layers.RNN(CELLS[variant](UNITS, dropout=0.3), return_sequences=True)
    trained.build((None, TIME, INPUT_DIM))
    _randomize(trained, 44)
    twin = gates_twin(trained.cell)
    assert type(twin) is type(trained.cell) and twin.return_gates and twin.dropout == 0.0
    twin_layer = keras.layers.RNN(twin, return_sequences=True)
    twin_layer.build((None, TIME, INPUT_DIM))
    twin.set_weights(trained.cell.get_weights())
    x = _inputs(45, "float32")
    parts = split_gates(twin_layer(x), UNITS)
    np.testing.assert_allclose(_numpy(parts["h"])[0], _numpy(trained(x))[0], atol=1e-6)


# ---------------------------------------------------------------- in the model and the ledger


def _random_model(cell, seed=50):
    config = Config(cell=cell, units=UNITS, embedding_dim=INPUT_DIM, seed=seed)
    model = build_model(config, 13)
    rng = np.random.default_rng(seed)
    model.set_weights([0.5 * rng.standard_normal(w.shape) for w in model.get_weights()])
    return model


def _padded_ids(seed=51, lengths=(9, 5, 1, 3)):
    ids = np.random.default_rng(seed).integers(2, 13, size=(len(lengths), max(lengths)))
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids.astype(np.int32)


@pytest.mark.torch_rerun
@pytest.mark.parametrize("variant", VARIANTS)
def test_ledger_shares_sum_to_the_logit(variant):
    """The decomposition holds exactly for every variant (the GRU: f = z, c = h, a = 1)."""
    model = _random_model(variant)
    assert isinstance(model.get_layer("bidirectional_lstm").forward_layer.cell, CELLS[variant])
    ids = _padded_ids()
    result = lg.ledger(model, ids)
    logits = np.asarray(ops.convert_to_numpy(model(ids)), np.float64).reshape(-1)
    mask = ids != 0
    total = np.where(mask, result["A"], 0.0).sum(axis=1)
    np.testing.assert_allclose(total, logits - result["bias"], rtol=0, atol=1e-5)
    assert np.max(np.abs(logits - result["bias"])) > 1e-2  # not trivially so
    assert np.all(result["A"][mask] != 0)
    parts = gm.gates(model, ids)[0]
    if variant == "gru":
        np.testing.assert_array_equal(parts["h"], parts["c"])
        real = np.where(mask[..., None], 1.0, 0.0)  # padding positions hold 0
        np.testing.assert_allclose(parts["input_gate"], real - parts["forget_gate"], atol=1e-7)
        np.testing.assert_array_equal(parts["output_gate"][mask], 1.0)
    if variant == "coupled":
        np.testing.assert_allclose(
            parts["input_gate"][mask] + parts["forget_gate"][mask], 1.0, atol=1e-6
        )


@pytest.mark.parametrize("variant", VARIANTS)
def test_inspection_shows_the_variant_gates(variant):
    model = _random_model(variant, seed=52)
    inspector = build_inspector(model)
    ids = _padded_ids(seed=53)[:1]
    review = ids[0][ids[0] != 0]
    trace = gate_trace(inspector, review)
    ledger_parts = gm.gates(model, ids)[0]
    for name in GATE_NAMES:
        np.testing.assert_allclose(
            trace[name], ledger_parts[name][0, : len(review)], atol=1e-6, err_msg=name
        )


@pytest.mark.torch_rerun
def test_runs_on_the_requested_backend():
    """tests/test_backends.py reruns this module with KERAS_BACKEND set; make sure it took."""
    import os

    assert BACKEND == os.environ.get("KERAS_BACKEND", BACKEND)
