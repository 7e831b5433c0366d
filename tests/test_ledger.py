"""inspection.ledger: the tokens' shares A_t add up to the logit, and mean what they claim.

Models here are tiny (vocabulary 12, 3-dimensional embeddings, 4 units) with random
N(0, 0.5²) weights on every layer, the logit included, so that gates differ by unit and step.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import LEDGER_EMBEDDING as EMBEDDING
from helpers import LEDGER_UNITS as UNITS
from helpers import LEDGER_VOCAB as VOCAB
from helpers import random_ledger_model as _random_model

from lstm_reviews.config import Config
from lstm_reviews.inspection import crosscheck, ledger_words
from lstm_reviews.inspection import gate_model as gm
from lstm_reviews.inspection import ledger as lg
from lstm_reviews.model.classifier import build_model

TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
LENGTHS = [9, 5, 1, 3]  # a padded batch; row 2 is a one-token review
ROOT = Path(__file__).resolve().parent.parent


def _padded_batch(seed=1, lengths=LENGTHS, extra=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB, size=(len(lengths), max(lengths) + extra)).astype(np.int32)
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids


def _model_logits(model, ids):
    return np.asarray(
        keras.ops.convert_to_numpy(model(ids, training=False)), dtype=np.float64
    ).reshape(-1)


# ---------------------------------------------------------------- the sum identity


# float32 again under PyTorch (tests/test_backends.py); float64 not: Keras computes a float64
# ops.matmul in float32 there, so the model's logit is float32's (helpers._float64_error).
@pytest.mark.parametrize(
    "dtype", [pytest.param("float32", marks=pytest.mark.torch_rerun), "float64"]
)
@pytest.mark.parametrize("pooling", ["max", "max_mean"])
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "forward"])
def test_token_shares_sum_to_the_logit(bidirectional, pooling, dtype):
    model = _random_model(bidirectional, pooling, dtype, seed=2)
    ids = _padded_batch()
    result = lg.ledger(model, ids)
    mask = ids != 0
    names = ["forward", "backward"] if bidirectional else ["forward"]
    assert [name in result for name in ("forward", "backward")] == [True, bidirectional]
    assert result["A"].shape == ids.shape and result["logit"].shape == (len(LENGTHS),)
    assert result["forward"]["w"].shape == ids.shape + (UNITS,)
    assert model.get_layer("embedding").compute_dtype == dtype  # really built in dtype
    np.testing.assert_allclose(result["A"], sum(result[name]["A"] for name in names), atol=1e-15)

    # The ledger's logit is the model's own; its bias the logit layer's.
    logits = _model_logits(model, ids)
    np.testing.assert_allclose(result["logit"], logits, rtol=0, atol=TOLERANCE[dtype])
    assert result["bias"] == pytest.approx(float(model.get_layer("logit").get_weights()[1][0]))

    total = np.where(mask, result["A"], 0.0).sum(axis=1)
    np.testing.assert_allclose(total, logits - result["bias"], rtol=0, atol=TOLERANCE[dtype])
    # Not trivially so: the logits differ from the bias and no real token's share is zero.
    assert np.all(np.abs(logits - result["bias"]) > 1e-3)
    assert np.all(result["A"][mask] != 0) and np.all(result["A"][~mask] == 0)
    for name in names:
        entry = result[name]
        assert np.all(np.isnan(entry["retention"][~mask]))
        retention = entry["retention"][mask]
        assert np.all((retention > 0) & (retention <= 1))
        np.testing.assert_allclose(entry["read"], np.abs(entry["K"] * entry["w"]).sum(-1))
        assert np.all(entry["read"] >= np.abs(entry["A"]) - 1e-15)


@pytest.mark.torch_rerun
def test_runs_on_the_requested_backend():
    """tests/test_backends.py reruns part of this module with KERAS_BACKEND set."""
    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", keras.backend.backend())


def test_keras_lstm_layers_are_read_the_same_way():
    """keras.layers.LSTM, inside Bidirectional: same algebra, same identity."""
    model = _random_model(True, "max_mean", seed=3, keras_lstm=True)
    assert all(isinstance(layer, keras.layers.LSTM) for layer in gm.directions(model))
    ids = _padded_batch(seed=4)
    result = lg.ledger(model, ids)
    np.testing.assert_allclose(
        result["A"].sum(axis=1), _model_logits(model, ids) - result["bias"], rtol=0, atol=1e-5
    )


def test_directions_and_their_errors():
    bi = _random_model(True, "max", seed=5)
    forward, backward = gm.directions(bi)
    assert (forward.go_backwards, backward.go_backwards) == (False, True)
    assert len(gm.directions(_random_model(False, "max", seed=5))) == 1

    ids = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, EMBEDDING, mask_zero=True)(ids)
    gru = keras.Model(ids, keras.layers.GRU(UNITS, return_sequences=True)(x))
    with pytest.raises(ValueError, match="GRUCell"):
        gm.directions(gru)
    dense = keras.Model(ids, keras.layers.Dense(1)(x))
    with pytest.raises(ValueError, match="0 recurrent layers"):
        gm.directions(dense)
    with pytest.raises(ValueError, match="right-padded"):
        lg.ledger(bi, np.array([[3, 0, 4]], dtype=np.int32))


def test_gates_are_the_trained_layers_states_at_token_positions():
    """Both directions' h equal the trained Bidirectional output position by position, and
    pooling them as MaskedTimePooling does gives the model's pooled features."""
    model = _random_model(True, "max_mean", seed=6)
    ids = _padded_batch(seed=7)
    forward, backward = gm.gates(model, ids)
    trained = keras.Model(
        model.input,
        [model.get_layer("bidirectional_lstm").output, model.get_layer("pooling").output],
    )
    sequence, pooled = (keras.ops.convert_to_numpy(x) for x in trained(ids, training=False))
    mask = ids != 0
    np.testing.assert_allclose(forward["h"][mask], sequence[..., :UNITS][mask], atol=1e-6)
    np.testing.assert_allclose(backward["h"][mask], sequence[..., UNITS:][mask], atol=1e-6)
    assert np.all(forward["c"][~mask] == 0) and np.all(backward["h"][~mask] == 0)
    h = np.concatenate([forward["h"], backward["h"]], axis=-1)
    maximum = np.where(mask[..., None], h, -np.inf).max(axis=1)
    mean = h.sum(axis=1) / mask.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.concatenate([maximum, mean], axis=-1), pooled, atol=1e-6)


@pytest.mark.slow
def test_padding_does_not_change_a_reviews_ledger():
    model = _random_model(True, "max_mean", seed=8)
    batch = _padded_batch(seed=9, extra=4)  # every row padded, some by many steps
    gate_model = gm.build_gate_model(model)
    together = lg.ledger(model, batch, gate_model=gate_model)
    for row, length in enumerate(LENGTHS):
        alone = lg.ledger(model, batch[row, :length], gate_model=gate_model)
        np.testing.assert_allclose(together["A"][row, :length], alone["A"][0], atol=1e-6)
        for name in ("forward", "backward"):
            for key in ("A", "read", "retention"):
                np.testing.assert_allclose(
                    together[name][key][row, :length], alone[name][key][0], atol=1e-6, err_msg=key
                )
            np.testing.assert_array_equal(
                together[name]["half_life"][row, :length], alone[name]["half_life"][0]
            )


# ---------------------------------------------------------------- a cell set by hand

Y, E, X, F = 2, 3, 4, 5  # written then erased; the eraser; written then kept; filler


def _hand_set_model():
    """One unit, no recurrence: Y writes 0.5 and E (right after) forgets it; X writes 1 and
    the fillers F keep it (forget ≈ 1, input ≈ 0). Max pooling, logit = h_max + 0.3."""
    model = build_model(Config(units=1, embedding_dim=4, bidirectional=False, pooling="max"), 6)
    table = np.zeros((6, 4))
    table[[Y, E, X, F], [0, 1, 2, 3]] = 1.0  # one input dimension per token
    big = 10.0
    kernel = np.array(
        [  # columns: i, f, c̃, o
            [0.0, 0.0, big, big],  # Y: i = 0.5, c̃ ≈ 1
            [-big, -big, 0.0, big],  # E: forget ≈ 0, write nothing
            [big, big, big, big],  # X: i ≈ 1, c̃ ≈ 1
            [-big, big, 0.0, big],  # F: keep, write nothing
        ]
    )
    model.get_layer("embedding").set_weights([table])
    model.get_layer("lstm").cell.set_weights([kernel, np.zeros((1, 4)), np.zeros(4)])
    model.get_layer("logit").set_weights([np.ones((1, 1)), np.array([0.3])])
    return model


def test_kept_write_outweighs_erased_write():
    model = _hand_set_model()
    review = np.array([Y, E, X, F, F], dtype=np.int32)
    result = lg.ledger(model, review)
    entry = result["forward"]
    a_y, a_x = entry["A"][0, 0], entry["A"][0, 2]
    # Y's write (0.5) is half of X's (≈1): only the forgetting makes the gap this large.
    assert abs(a_x) > 1000 * abs(a_y) and a_x > 0.5
    assert entry["retention"][0, 2] > 0.999 and entry["retention"][0, 0] < 1e-3
    assert entry["half_life"][0, 0] == 1  # halved by the very next token
    assert np.isnan(entry["half_life"][0, 2]) and entry["censored"][0, 2]
    assert not entry["censored"][0, 0]
    assert result["A"].sum() == pytest.approx(result["logit"][0] - 0.3, abs=1e-5)


# ---------------------------------------------------------------- an independent NumPy reference


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_lstm(x, kernel, recurrent, bias):
    """x <[T, E]> -> gates and states <[T, units]> each, float64, from a zero state."""
    units = recurrent.shape[0]
    h, c = np.zeros(units), np.zeros(units)
    steps = []
    for x_t in x:
        z_i, z_f, z_c, z_o = np.split(x_t @ kernel + h @ recurrent + bias, 4)
        i, f, g, o = _sigmoid(z_i), _sigmoid(z_f), np.tanh(z_c), _sigmoid(z_o)
        c = f * c + i * g
        h = o * np.tanh(c)
        steps.append((i, f, g, o, c, h))
    return [np.array(part) for part in zip(*steps)]


def _reference_direction(i, f, g, o, c, h, v_max, v_mean, argmax):
    """A_t, K_t, retention, half-life by the definitions: sums over later steps, products."""
    length = len(c)
    kappa = o * np.tanh(c) / c * (v_max * (np.arange(length)[:, None] == argmax) + v_mean / length)
    w = i * g
    K = np.zeros_like(w)
    A, retention, half_life = (np.zeros(length) for _ in range(3))
    for t in range(length):
        for s in range(t, length):
            K[t] += kappa[s] * np.prod(f[t + 1 : s + 1], axis=0)
        A[t] = np.sum(K[t] * w[t])
        weight = np.abs(w[t]) / np.abs(w[t]).sum()
        retention[t] = np.sum(weight * np.prod(f[t + 1 :], axis=0))
        half_life[t] = next(
            (
                n
                for n in range(1, length - t)
                if np.sum(weight * np.prod(f[t + 1 : t + n + 1], axis=0)) <= 0.5
            ),
            np.nan,
        )
    return A, K, retention, half_life


def test_ledger_equals_numpy_reference_in_float64():
    model = _random_model(True, "max_mean", "float64", seed=10)
    ids = _padded_batch(seed=11, lengths=[7, 4])
    result = lg.ledger(model, ids)
    table = model.get_layer("embedding").get_weights()[0]
    layer = model.get_layer("bidirectional_lstm")
    v = model.get_layer("logit").get_weights()[0][:, 0]
    bias = model.get_layer("logit").get_weights()[1][0]
    for row, length in enumerate([7, 4]):
        x = table[ids[row, :length]]
        runs = {
            "forward": _numpy_lstm(x, *layer.forward_layer.cell.get_weights()),
            "backward": [
                part[::-1]
                for part in _numpy_lstm(x[::-1], *layer.backward_layer.cell.get_weights())
            ],
        }
        h = np.concatenate([runs["forward"][5], runs["backward"][5]], axis=-1)
        logit = np.concatenate([h.max(axis=0), h.mean(axis=0)]) @ v + bias
        assert result["logit"][row] == pytest.approx(logit, abs=1e-10)
        for d, name in enumerate(("forward", "backward")):
            parts = runs[name]
            v_max, v_mean = v[d * UNITS : (d + 1) * UNITS], v[(2 + d) * UNITS : (3 + d) * UNITS]
            argmax = parts[5].argmax(axis=0)
            if name == "backward":  # into reading order: the review read from its end
                parts = [part[::-1] for part in parts]
                argmax = length - 1 - argmax
            A, K, retention, half_life = _reference_direction(*parts, v_max, v_mean, argmax)
            if name == "backward":  # back to token positions
                A, K, retention, half_life = (a[::-1] for a in (A, K, retention, half_life))
            entry = result[name]
            np.testing.assert_allclose(entry["A"][row, :length], A, rtol=0, atol=1e-10)
            np.testing.assert_allclose(entry["K"][row, :length], K, rtol=0, atol=1e-10)
            np.testing.assert_allclose(entry["retention"][row, :length], retention, atol=1e-10)
            np.testing.assert_array_equal(entry["half_life"][row, :length], half_life)
            assert np.isnan(half_life[-1 if name == "forward" else 0])  # the last one read
            assert np.sum(~np.isnan(half_life)) > 0


# ---------------------------------------------------------------- over many reviews


REVIEWS = [
    np.array(review, dtype=np.int32)
    for review in (
        [3, 5, 3, 7, 2],
        [5],
        [9, 3, 3, 3, 8, 6, 4, 10, 2, 7, 3],
        [4, 6],
        [3, 8, 8, 5, 2, 2, 6],
        [10, 9, 7],
        [5, 3, 2, 4, 6, 7, 8, 9, 10, 3, 5, 2, 2, 8, 3, 4, 5],
    )
]


@pytest.fixture(scope="module")
def word_model():
    return _random_model(True, "max_mean", seed=12)


@pytest.fixture(scope="module")
def per_review(word_model):
    """Each review's ledger computed alone: the direct count."""
    gate_model = gm.build_gate_model(word_model)
    return [lg.ledger(word_model, review, gate_model=gate_model) for review in REVIEWS]


@pytest.mark.slow
def test_word_report_matches_direct_counts(word_model, per_review):
    word_ids = {"three": 3, "eight": 8, "absent": 11}
    report = ledger_words.word_ledger(
        word_model, REVIEWS + [np.array([], np.int32)], word_ids, batch_size=3, n_boot=200, seed=1
    )
    tokens = np.concatenate(REVIEWS)
    for label, word_id in [("three", 3), ("eight", 8), (None, None)]:
        stats = report["words"][label] if label else report["all"]
        where = [
            (k, np.flatnonzero(review == word_id) if word_id else np.arange(len(review)))
            for k, review in enumerate(REVIEWS)
        ]
        A = np.concatenate([per_review[k]["A"][0, at] for k, at in where])
        assert stats["count"] == (np.sum(tokens == word_id) if word_id else len(tokens))
        assert stats["reviews"] == sum(len(at) > 0 for _, at in where)
        assert stats["mean_A"] == pytest.approx(A.mean(), abs=1e-6)
        assert stats["mean_abs_A"] == pytest.approx(np.abs(A).mean(), abs=1e-6)
        read = np.concatenate([per_review[k]["read"][0, at] for k, at in where])
        assert stats["mean_read"] == pytest.approx(read.mean(), abs=1e-6)
        assert stats["ci_method"] == "bootstrap"
        low, high = stats["mean_A_ci"]
        assert A.min() <= low <= stats["mean_A"] <= high <= A.max() and low < high
        low, high = stats["mean_abs_A_ci"]
        assert low <= stats["mean_abs_A"] <= high
        retentions, half_lives, censored = [], [], 0
        for name in ("forward", "backward"):
            entry = [per_review[k][name] for k, _ in where]
            abs_a = np.concatenate([np.abs(e["A"][0, at]) for e, (_, at) in zip(entry, where)])
            assert stats[name]["mean_abs_A"] == pytest.approx(abs_a.mean(), abs=1e-6)
            retention = np.concatenate([e["retention"][0, at] for e, (_, at) in zip(entry, where)])
            assert stats[name]["mean_retention"] == pytest.approx(retention.mean(), abs=1e-6)
            half_life = np.concatenate([e["half_life"][0, at] for e, (_, at) in zip(entry, where)])
            observed = half_life[~np.isnan(half_life)]
            expected = np.median(observed) if observed.size else None
            assert stats[name]["half_life_median"] == expected
            assert stats[name]["half_life_censored"] == pytest.approx(np.isnan(half_life).mean())
            retentions.append(retention)
            half_lives.append(observed)
            censored += np.isnan(half_life).sum()
        assert stats["mean_retention"] == pytest.approx(np.concatenate(retentions).mean(), abs=1e-6)
        assert stats["half_life_median"] == np.median(np.concatenate(half_lives))
        assert stats["half_life_censored"] == pytest.approx(censored / (2 * len(A)))
        if word_id:
            assert report["by_id"]["count"][word_id] == stats["count"]
            assert report["by_id"]["mean_A"][word_id] == pytest.approx(stats["mean_A"])
    absent = report["words"]["absent"]
    assert absent["count"] == 0 and absent["mean_A"] is None and absent["mean_A_ci"] is None
    assert report["by_id"]["count"][11] == 0 and np.isnan(report["by_id"]["mean_A"][11])

    # Seeded: the same interval again, whichever other words are asked for.
    again = ledger_words.word_ledger(
        word_model, REVIEWS, {"three": 3}, batch_size=5, n_boot=200, seed=1
    )
    interval = report["words"]["three"]["mean_A_ci"]
    assert again["words"]["three"]["mean_A_ci"] == pytest.approx(interval)


def test_word_report_above_the_bootstrap_limit_uses_the_normal_interval(word_model, per_review):
    report = ledger_words.word_ledger(
        word_model, REVIEWS, {"three": 3}, bootstrap_limit=4, n_boot=50
    )
    stats = report["words"]["three"]
    assert stats["ci_method"] == "normal" and stats["count"] > 4
    A = np.concatenate([result["A"][0, review == 3] for result, review in zip(per_review, REVIEWS)])
    half = 1.959963984540054 * A.std(ddof=1) / np.sqrt(len(A))
    np.testing.assert_allclose(stats["mean_A_ci"], (A.mean() - half, A.mean() + half), atol=1e-6)


def test_top_words_respect_the_minimum_count(word_model, per_review):
    report = ledger_words.word_ledger(word_model, REVIEWS, batch_size=4, n_boot=10)
    tokens = np.concatenate(REVIEWS)
    shares = np.concatenate([result["A"][0] for result in per_review])
    min_count = 5
    top = ledger_words.top_words(report, n=2, min_count=min_count)
    eligible = {
        word: shares[tokens == word].mean()
        for word in np.unique(tokens)
        if np.sum(tokens == word) >= min_count
    }
    assert 2 < len(eligible) < len(np.unique(tokens))  # the minimum really excludes some
    positive = sorted((w for w in eligible if eligible[w] > 0), key=lambda w: -eligible[w])[:2]
    negative = sorted((w for w in eligible if eligible[w] < 0), key=lambda w: eligible[w])[:2]
    assert top["positive"].tolist() == positive and top["negative"].tolist() == negative
    assert all(report["by_id"]["count"][w] >= min_count for w in positive + negative)
    assert ledger_words.top_words(report, min_count=1000)["positive"].size == 0


# ---------------------------------------------------------------- cross-checks


def test_rank_correlation_of_known_arrays():
    a = np.array([0.3, -1.0, 2.5, 7.0, 0.0])
    assert crosscheck.rank_correlation(a, a**3) == pytest.approx(1.0)
    assert crosscheck.rank_correlation(a, -a) == pytest.approx(-1.0)
    # Ties share their average rank: ranks (0.5, 0.5, 2) against (0, 1, 2).
    ranks_a, ranks_b = np.array([0.5, 0.5, 2.0]), np.array([0.0, 1.0, 2.0])
    expected = np.corrcoef(ranks_a, ranks_b)[0, 1]
    assert crosscheck.rank_correlation([1, 1, 3], [10, 20, 30]) == pytest.approx(expected)
    assert np.isnan(crosscheck.rank_correlation([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        crosscheck.rank_correlation([1, 2, 3], [1, 2])


def test_occlusion_removes_each_token_once():
    model = _random_model(True, "max_mean", seed=13)
    review = np.array([3, 7, 2, 9, 5], dtype=np.int32)
    effect = crosscheck.occlusion(model, review, batch_size=2)
    assert effect.shape == (len(review),)
    full = _model_logits(model, review[None, :])[0]
    for t in (0, 3, 4):
        without = _model_logits(model, np.delete(review, t)[None, :])[0]
        assert effect[t] == pytest.approx(full - without, abs=1e-5)
    # One token: its removal leaves an empty review, whose logit is the bias.
    bias = float(model.get_layer("logit").get_weights()[1][0])
    single = crosscheck.occlusion(model, review[:1])
    assert single[0] == pytest.approx(_model_logits(model, review[None, :1])[0] - bias, abs=1e-5)


# ---------------------------------------------------------------- the JAX backend

JAX_SCRIPT = textwrap.dedent("""
    import keras, numpy as np
    from lstm_reviews.inspection import ledger as lg
    from lstm_reviews.config import Config
    from lstm_reviews.model.classifier import build_model
    assert keras.backend.backend() == "jax", keras.backend.backend()
    assert lg.__file__.startswith(ROOT), lg.__file__
    model = build_model(Config(units=4, embedding_dim=3, bidirectional=True,
                               pooling="max_mean"), 12)
    rng = np.random.default_rng(0)
    model.set_weights([0.5 * rng.standard_normal(w.shape) for w in model.get_weights()])
    ids = rng.integers(2, 12, size=(3, 6)).astype(np.int32)
    ids[1, 2:] = 0
    ids[2, 1:] = 0
    result = lg.ledger(model, ids)
    direct = np.asarray(model(ids, training=False)).reshape(-1)
    assert np.all(np.abs(direct - result["bias"]) > 1e-3)
    gap = np.max(np.abs(result["A"].sum(axis=1) - (direct - result["bias"])))
    print("backend", keras.backend.backend(), "gap", gap)
    assert gap < 1e-5, gap
""")


@pytest.mark.slow
def test_sum_identity_under_jax():
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(ROOT),
    }
    script = f"ROOT = {str(ROOT)!r}\n" + JAX_SCRIPT
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "backend jax gap" in result.stdout, output[-2000:]
