"""inspection.ledger.review_ledger and the ledger's pictures (inspection.ledger_figure,
.ledger_page): the reading matrix adds up to each token's share, the waterfall to the logit;
the PNG and the HTML page are written for a short and a long review."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from helpers import EXPLAIN_VOCABULARY as VOCABULARY
from helpers import random_ledger_model as _random_model

from lstm_reviews.inspection import gate_model as gm
from lstm_reviews.inspection import ledger as lg
from lstm_reviews.inspection import ledger_figure, ledger_page, ledger_view

TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


def _review(length, seed=0, vocab=12):
    return np.random.default_rng(seed).integers(2, vocab, size=length).astype(np.int32)


def _brute_force_reading(model, ids):
    """reading[t, τ] from the definition, in token positions: per direction, κ at the step
    that reads τ times the forget gates of the steps read after t up to τ, dotted with w_t."""
    full = lg.ledger(model, ids[None, :])
    parts = gm.gates(model, ids[None, :])
    time = len(ids)
    reading = np.zeros((time, time))
    for name, gates in zip(gm.DIRECTION_NAMES, parts):
        w, kappa = full[name]["w"][0], full[name]["kappa"][0]
        forget = gates["forget_gate"][0]
        for t in range(time):
            # Forward: steps t+1..τ come after t. Backward (reads last to first): τ..t-1.
            later = range(t, time) if name == "forward" else range(t, -1, -1)
            for tau in later:
                between = range(t + 1, tau + 1) if name == "forward" else range(tau, t)
                decay = np.prod([forget[k] for k in between], axis=0) if between else 1.0
                reading[t, tau] += np.dot(kappa[tau] * decay, w[t])
    return reading


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pooling", ["max", "max_mean"])
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "forward"])
def test_reading_rows_add_up_to_the_token_shares(bidirectional, pooling, dtype):
    model = _random_model(bidirectional, pooling, dtype, seed=11)
    ids = _review(9, seed=12)
    led = lg.review_ledger(model, ids)
    time = len(ids)
    names = ["forward", "backward"] if bidirectional else ["forward"]
    assert led["directions"] == tuple(names)
    assert led["reading"].shape == (time, time)
    for key in ("A", "write", "retention", "read"):
        assert led[key].shape == (time,), key

    np.testing.assert_allclose(led["reading"].sum(axis=1), led["A"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        led["A"].sum(), led["logit"] - led["bias"], rtol=0, atol=TOLERANCE[dtype]
    )
    assert abs(led["logit"] - led["bias"]) > 1e-3  # not trivially so
    np.testing.assert_allclose(led["A"], sum(led[f"A_{name}"] for name in names), atol=1e-15)
    # The same numbers as the batched ledger, and the definition term by term.
    batched = lg.ledger(model, ids[None, :])
    np.testing.assert_allclose(led["A"], batched["A"][0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(led["reading"], _brute_force_reading(model, ids), rtol=0, atol=1e-12)
    if not bidirectional:  # one direction reading forwards reads a write only later
        assert np.all(np.tril(led["reading"], -1) == 0)
        assert "A_backward" not in led

    # write: ‖w‖ over both directions' units; retention: their |w|-weighted retention.
    w = [batched[name]["w"][0] for name in names]
    np.testing.assert_allclose(
        led["write"], np.linalg.norm(np.concatenate(w, axis=-1), axis=-1), rtol=1e-12
    )
    l1 = [np.abs(part).sum(axis=-1) for part in w]
    kept = sum(batched[name]["retention"][0] * size for name, size in zip(names, l1))
    np.testing.assert_allclose(led["retention"], kept / sum(l1), rtol=1e-12)
    assert np.all((led["retention"] > 0) & (led["retention"] <= 1))


def test_review_ledger_refuses_padding_and_batches():
    model = _random_model(True, "max", seed=13)
    for bad in (np.array([3, 0, 4]), np.array([[3, 4]]), np.array([], dtype=np.int32)):
        with pytest.raises(ValueError, match="one review"):
            lg.review_ledger(model, bad)


@pytest.fixture(scope="module")
def trained_model(inspected_model):
    return inspected_model


def _tokens_and_ledger(model, length, seed):
    ids = _review(length, seed=seed, vocab=len(VOCABULARY))
    return [VOCABULARY[k] for k in ids], lg.review_ledger(model, ids)


@pytest.mark.parametrize("top", [5, 12, 40])
def test_waterfall_adds_up_to_the_logit(trained_model, top):
    tokens, led = _tokens_and_ledger(trained_model, 20, seed=14)
    steps = ledger_view.ledger_waterfall(tokens, led, top)
    kinds = [step["kind"] for step in steps]
    shown = min(top, len(tokens))
    others = len(tokens) - shown
    assert kinds == ["bias"] + ["token"] * shown + ["others"] * (others > 0) + ["logit"]
    assert steps[0]["start"] == 0 and steps[0]["end"] == pytest.approx(led["bias"], abs=1e-15)
    for before, step in zip(steps[:-2], steps[1:-1]):  # each bar starts where the last ended
        assert step["start"] == before["end"]
    deltas = [step["end"] - step["start"] for step in steps[:-1]]
    assert steps[-1]["start"] == 0 and steps[-1]["end"] == pytest.approx(sum(deltas), abs=1e-12)
    np.testing.assert_allclose(steps[-1]["end"], led["logit"], rtol=0, atol=1e-5)
    # The top tokens by |A|, largest first; "others" holds exactly the rest.
    magnitudes = [abs(delta) for delta in deltas[1 : 1 + shown]]
    assert magnitudes == sorted(magnitudes, reverse=True)
    if others:
        assert steps[-2]["label"] == f"all other {others} tokens"
        top_positions = ledger_view.top_tokens(led, top)
        rest = np.delete(led["A"], top_positions).sum()
        assert deltas[-1] == pytest.approx(rest, abs=1e-12)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR: width, height


@pytest.mark.slow
def test_plot_ledger_writes_a_png_that_grows_with_the_review(trained_model, tmp_path):
    sizes = {}
    for length in (20, 600):
        tokens, led = _tokens_and_ledger(trained_model, length, seed=length)
        tokens[3] = r"$\nocommand$"  # text: as mathtext it would fail to draw
        path = tmp_path / f"ledger_{length}.png"
        ledger_figure.plot_ledger(tokens, led, path, title=f"{length} tokens", top=12)
        sizes[length] = _png_size(path)
    assert sizes[20][0] == sizes[600][0]  # one width; the long page wraps onto more lines
    assert sizes[600][1] > sizes[20][1] + 300


def test_plot_ledger_refuses_mismatched_tokens(trained_model, tmp_path):
    tokens, led = _tokens_and_ledger(trained_model, 5, seed=15)
    with pytest.raises(ValueError, match="4 tokens"):
        ledger_figure.plot_ledger(tokens[:4], led, tmp_path / "x.png")


def test_ledger_html_escapes_tokens_and_has_one_span_per_token(trained_model):
    tokens, led = _tokens_and_ledger(trained_model, 6, seed=16)
    tokens[1], tokens[4] = '<script>alert("x")</script>', "a&b"
    page = ledger_page.render_ledger_html(
        tokens, led, title="t<1>", note="n&", extra="<h2>Gate view</h2>"
    )
    assert page.count('<span class="tok"') == len(tokens)
    assert "<script>" not in page and "a&b" not in page and "t<1>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and ">a&amp;b<" in page
    assert "<title>t&lt;1&gt;</title>" in page and "n&amp;" in page
    assert page.rstrip().endswith("<h2>Gate view</h2>\n</body></html>")
    # The waterfall: bias, 12 tokens at most (here all 6), the logit.
    assert page.count('class="wf-row"') == len(tokens) + 2
    assert f"{led['logit']:+.3f}" in page
