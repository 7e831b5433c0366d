"""lstm_reviews.inspection.gates, .word_report, .gate_views and .explain: the inspection equals
the trained RNN, word counts, the pictures, the CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import EXPLAIN_UNITS as UNITS
from helpers import EXPLAIN_VOCABULARY as VOCABULARY
from helpers import explain_config as _config
from helpers import trained_explain_model as _trained
from helpers import with_keras_lstm as _with_keras_lstm

from lstm_reviews import explain
from lstm_reviews.inspection import gate_views, word_report
from lstm_reviews.inspection import gates as inspection
from lstm_reviews.inspection.explanation import explain_review
from lstm_reviews.model.classifier import build_model
from lstm_reviews.rundir import RunDir, load_run

# "don't" carries a character HTML must escape; the rest are the tiny fixture's words.
TOL = 1e-6


def _save_run(model: keras.Model, run_dir: Path, bidirectional: bool) -> Path:
    run_dir.mkdir(parents=True)
    model.save(run_dir / "model.keras")
    (run_dir / "vocabulary.txt").write_text("\n".join(VOCABULARY) + "\n", encoding="utf-8")
    RunDir(run_dir).write_config(_config(bidirectional))
    return run_dir


@pytest.fixture(scope="module")
def bi_run(tmp_path_factory, inspected_model) -> Path:
    """A saved bidirectional run directory (our cell)."""
    return _save_run(inspected_model, tmp_path_factory.mktemp("runs") / "bi", True)


@pytest.fixture(scope="module")
def forward_model() -> keras.Model:
    return _trained(False)


@pytest.fixture(scope="module")
def keras_lstm_model() -> keras.Model:
    return _trained(False, keras_lstm=True)


def _ids(*words) -> np.ndarray:
    return np.array([VOCABULARY.index(word) for word in words], dtype=np.int32)


REVIEW = _ids(
    "this", "movie", "was", "amazing", "and", "the", "actors", "give", "all", "awful", "brilliant"
)


def _layer_states(layer, embedded, mask):
    """The trained recurrent layer, rebuilt with return_state=True and its own weights.

    Fed the T prefixes of one review (rows of a lower-triangular batch), its final states
    are (h_t, c_t) for t = 1..T. Returns h, c <float32>[T, units].
    """
    stateful = type(layer).from_config({**layer.get_config(), "return_state": True})
    _, h, c = stateful(embedded, mask=mask)  # builds it
    stateful.set_weights(layer.get_weights())
    _, h, c = stateful(embedded, mask=mask)
    return keras.ops.convert_to_numpy(h), keras.ops.convert_to_numpy(c)


def _check_against_trained_layer(model, layer, trace):
    """h_t from the layer's own sequence output, c_t from its final state over each prefix."""
    embedding = model.get_layer("embedding")
    sequence = layer(embedding(REVIEW[None, :]))
    h_sequence = keras.ops.convert_to_numpy(sequence)[0, :, :UNITS]  # forward half first
    np.testing.assert_allclose(trace["h"], h_sequence, atol=TOL, rtol=0)

    prefixes = np.tril(np.broadcast_to(REVIEW, (len(REVIEW), len(REVIEW))))
    forward = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
    h, c = _layer_states(forward, embedding(prefixes), prefixes != 0)
    np.testing.assert_allclose(trace["h"], h, atol=TOL, rtol=0)
    np.testing.assert_allclose(trace["c"], c, atol=TOL, rtol=0)


def test_trace_shapes_ranges_and_prediction(bi_run):
    run = load_run(bi_run)
    inspector = inspection.build_inspector(run.model)
    assert inspector.bidirectional and inspector.units == UNITS
    trace = inspection.gate_trace(inspector, REVIEW)
    time = len(REVIEW)
    for name in ("h", "c", "input_gate", "forget_gate", "output_gate", "candidate"):
        assert trace[name].shape == (time, UNITS), name
    for name in (
        "input_gate_mean",
        "forget_gate_open",
        "cell_change",
        "write",
        "logit",
        "probability",
    ):
        assert trace[name].shape == (time,), name
    for gate in ("input_gate", "forget_gate", "output_gate"):
        assert np.all(trace[gate] > 0) and np.all(trace[gate] < 1), gate
        np.testing.assert_allclose(trace[f"{gate}_mean"], trace[gate].mean(axis=1), atol=1e-7)
    np.testing.assert_allclose(
        trace["cell_change"][1:], np.linalg.norm(np.diff(trace["c"], axis=0), axis=1), atol=1e-6
    )
    np.testing.assert_allclose(trace["cell_change"][0], np.linalg.norm(trace["c"][0]), atol=1e-6)
    np.testing.assert_allclose(
        trace["write"], np.linalg.norm(trace["input_gate"] * trace["candidate"], axis=1), atol=1e-6
    )

    # Running prediction = the whole (bidirectional) model on the review cut after token t.
    for t in (0, 4, time - 1):
        logit = keras.ops.convert_to_numpy(run.model(REVIEW[None, : t + 1], training=False))
        np.testing.assert_allclose(trace["logit"][t], logit[0, 0], atol=1e-5)
    assert np.all((trace["probability"] > 0) & (trace["probability"] < 1))

    _check_against_trained_layer(run.model, run.model.get_layer("bidirectional_lstm"), trace)


@pytest.mark.slow
def test_running_prediction_in_calls_of_bounded_size_is_every_prefix(bi_run, monkeypatch):
    """Issue #27 C1: the prefixes of a long review go through in calls of at most
    prefix_tokens padded tokens (memory), and still give the model's verdict on each prefix."""
    model = load_run(bi_run).model
    review = np.concatenate([REVIEW, REVIEW, REVIEW])
    expected = [
        keras.ops.convert_to_numpy(model(review[None, : t + 1], training=False))[0, 0]
        for t in range(len(review))
    ]
    shapes = []
    predict_on_batch = model.predict_on_batch
    monkeypatch.setattr(
        model, "predict_on_batch", lambda rows: shapes.append(rows.shape) or predict_on_batch(rows)
    )
    logits = inspection.running_logits(model, review, prefix_batch=8, prefix_tokens=40)
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert all(rows * length <= 40 or rows == 1 for rows, length in shapes), shapes
    assert sum(rows for rows, _ in shapes) == len(review)


def test_inspection_states_equal_trained_rnn(forward_model):
    inspector = inspection.build_inspector(forward_model)
    assert not inspector.bidirectional
    trace = inspection.gate_trace(inspector, REVIEW)
    _check_against_trained_layer(forward_model, forward_model.get_layer("lstm"), trace)

    # Forward-only: the running prediction is the head on the states so far,
    # logit(max(h_1..h_t)) (dropout is off at inference).
    kernel, bias = forward_model.get_layer("logit").get_weights()
    pooled = np.maximum.accumulate(trace["h"], axis=0)
    np.testing.assert_allclose(trace["logit"], (pooled @ kernel + bias)[:, 0], atol=1e-5)


def test_keras_lstm_weights_copied_into_our_cell(keras_lstm_model):
    layer = keras_lstm_model.get_layer("lstm")
    assert isinstance(layer, keras.layers.LSTM)
    trace = inspection.gate_trace(inspection.build_inspector(keras_lstm_model), REVIEW)
    _check_against_trained_layer(keras_lstm_model, layer, trace)
    logit = keras.ops.convert_to_numpy(keras_lstm_model(REVIEW[None, :], training=False))
    np.testing.assert_allclose(trace["logit"][-1], logit[0, 0], atol=1e-5)


def test_bidirectional_keras_lstm_reports_forward_direction():
    model = _with_keras_lstm(build_model(_config(True), len(VOCABULARY)))
    inspector = inspection.build_inspector(model)
    assert inspector.bidirectional
    trace = inspection.gate_trace(inspector, REVIEW)
    _check_against_trained_layer(model, model.get_layer("bidirectional_lstm"), trace)


def test_word_statistics_match_hand_count(forward_model):
    inspector = inspection.build_inspector(forward_model)
    reviews = [
        _ids("amazing", "this", "amazing"),
        _ids("plot"),
        _ids("this", "this", "amazing", "give"),
        _ids("amazing"),
    ]
    word_ids = {
        "amazing": VOCABULARY.index("amazing"),
        "this": VOCABULARY.index("this"),
        "awesome_absent": VOCABULARY.index("superb"),
    }
    # batch_size 3: padded batches of different lengths
    report = inspection.word_statistics(inspector, reviews, word_ids, batch_size=3)
    assert (report["amazing"]["count"], report["amazing"]["reviews"]) == (4, 3)
    assert (report["this"]["count"], report["this"]["reviews"]) == (3, 2)
    assert (report["awesome_absent"]["count"], report["awesome_absent"]["reviews"]) == (0, 0)
    assert report["awesome_absent"]["cell_change"] is None
    assert (report[None]["count"], report[None]["reviews"]) == (9, 4)

    # The means equal those of the per-review traces at the word's positions.
    traces = [inspection.gate_trace(inspector, review) for review in reviews]
    for word in ("amazing", "this"):
        for key in ("input_gate_mean", "cell_change", "forget_gate_mean", "write"):
            values = [
                trace[key][k]
                for trace, review in zip(traces, reviews)
                for k in np.flatnonzero(review == word_ids[word])
            ]
            np.testing.assert_allclose(report[word][key], np.mean(values), atol=1e-6)


def test_word_ids_use_training_standardization():
    ids = word_report.word_vocabulary_ids(VOCABULARY, ["Amazing", "zzzz", "this movie", "DON'T"])
    assert ids == {
        "Amazing": VOCABULARY.index("amazing"),
        "zzzz": None,
        "this movie": None,
        "DON'T": VOCABULARY.index("don't"),
    }


def test_render_html_escapes_tokens():
    tokens = ['<script>alert("x")</script>', "a&b"]
    trace = {
        key: np.array([0.2, 0.9], dtype=np.float32)
        for key in (
            "input_gate_mean",
            "forget_gate_mean",
            "output_gate_mean",
            "cell_change",
            "probability",
        )
    }
    page = gate_views.render_html(tokens, trace, title="t<1>")
    assert "<script>" not in page and "a&b" not in page and "t<1>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and "a&amp;b" in page


@pytest.mark.slow
def test_cli_trace_writes_plot_html_and_json(bi_run, tmp_path, capsys):
    plot, page, out = tmp_path / "gates.png", tmp_path / "gates.html", tmp_path / "trace.json"
    text = "This movie? Don't... it was <b>amazing</b>!"
    assert (
        explain.main(
            [
                "--model",
                str(bi_run),
                text,
                "--plot",
                str(plot),
                "--html",
                str(page),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "FORWARD direction" in printed and re.search(r"\n\s+4\s+don't\s", printed)
    # The ledger's columns follow P(pos): A, then per direction, write, retention.
    assert re.search(r"P\(pos\)\s+A\s+A fwd\s+A bwd\s+write\s+ret\n", printed)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html_text = page.read_text(encoding="utf-8")
    assert ">don&#x27;t</span>" in html_text and "don't" not in html_text
    # The ledger page (one coloured span per token), then the gate view.
    assert html_text.count('<span class="tok"') == 8
    assert html_text.index("From the bias to the logit") < html_text.index("Gate view")
    trace = json.loads(out.read_text())["trace"]
    # "!" and "?" are tokens in our standardization; "it" is a filler word
    assert trace["tokens"] == ["this", "movie", "[UNK]", "don't", "it", "was", "amazing", "[UNK]"]
    assert len(trace["probability"]) == 8
    ledger = trace["ledger"]
    assert len(ledger["A"]) == 8
    np.testing.assert_allclose(ledger["A"], np.add(ledger["A_forward"], ledger["A_backward"]))
    assert sum(ledger["A"]) == pytest.approx(ledger["logit"] - ledger["bias"], abs=1e-5)
    # The whole review's logit is the running prediction at its last token.
    assert ledger["logit"] == pytest.approx(trace["logit"][-1], abs=1e-5)
    printed_logit = re.search(r"logit ([-+][\d.]+) = bias", printed)
    assert float(printed_logit.group(1)) == pytest.approx(ledger["logit"], abs=1e-4)


@pytest.mark.slow
def test_cli_word_report_on_tiny_test_split(bi_run, tiny_imdb, tmp_path, capsys):
    out = tmp_path / "words.json"
    argv = [
        "--model",
        str(bi_run),
        "--words",
        "amazing",
        "this",
        "nonword",
        "--data",
        str(tiny_imdb),
        "--json",
        str(out),
    ]
    assert explain.main(argv) == 0
    assert "nonword" in capsys.readouterr().out
    report = json.loads(out.read_text())["word_report"]
    texts = [path.read_text() for path in (tiny_imdb / "test").glob("*/*.txt")]
    assert report["reviews"] == len(texts)
    counts = {row["word"]: row["count"] for row in report["words"]}
    for word in ("amazing", "this"):  # fixture reviews are < max_length: nothing truncated
        assert counts[word] == sum(len(re.findall(rf"\b{word}\b", text.lower())) for text in texts)
    assert counts["nonword"] == 0
    assert 0 < report["all_tokens"]["input_gate_mean"] < 1

    assert explain.main(argv[:-2] + ["--limit", "7", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["word_report"]["reviews"] == 7


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "{missing}", "some text"], "{missing}"),
        (["--model", "{run}", ""], "empty"),
        (["--model", "{run}", "... --- ..."], "no tokens"),
        (["--model", "{run}"], "TEXT"),
        (["--model", "{run}", "--words", "--limit", "0"], "--limit"),
        (["--model", "{empty}", "text"], "model.keras"),
    ],
)
def test_cli_bad_input_exits_2_with_message(bi_run, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    paths = {
        "missing": str(tmp_path / "no_such_run"),
        "run": str(bi_run),
        "empty": str(tmp_path / "empty"),
    }
    argv = [arg.format(**paths) for arg in argv]
    try:
        code = explain.main(argv)
    except SystemExit as exit_info:  # argparse's usage errors
        code = exit_info.code
    assert code == 2
    assert message.format(**paths) in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, name, message",
    [
        (
            "--plot",
            "{tmp}/no_such_folder/ledger.png",
            "the folder {tmp}/no_such_folder does not exist",
        ),
        ("--plot", "{tmp}/a_file.txt/ledger.png", "the folder {tmp}/a_file.txt is not a folder"),
        ("--plot", "{tmp}/out/", "is a folder; expected a file name ending in .png"),
        ("--plot", "{tmp}/taken.png", "is a folder; expected a file name ending in .png"),
        ("--plot", "{tmp}/out/.png", "expected a file name ending in .png"),  # no name, a suffix
        ("--plot", "{tmp}/ledger", "expected a file name ending in .png"),
        ("--plot", "", "is a folder; expected a file name ending in .png"),
        ("--html", "{tmp}/ledger.htm", "expected a file name ending in .html"),
        ("--json", "{tmp}/words.txt", "expected a file name ending in .json"),
        ("--json", "{tmp}/locked/words.json", "the folder {tmp}/locked is not writable"),
        ("--html", "{tmp}/read_only.html", "the file exists and is not writable"),
    ],
)
def test_cli_bad_output_path_refused_before_the_work(
    tmp_path, capsys, monkeypatch, flag, name, message
):
    (tmp_path / "out").mkdir()
    (tmp_path / "taken.png").mkdir()
    (tmp_path / "a_file.txt").write_text("a file, not a folder")
    (tmp_path / "locked").mkdir(mode=0o555)
    (tmp_path / "read_only.html").write_text("kept")
    (tmp_path / "read_only.html").chmod(0o444)
    # Root may write anywhere, so os.access says what a user's permissions say.
    refused = {tmp_path / "locked", tmp_path / "read_only.html"}
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path) not in refused and access(path, mode)
    )
    name = name.format(tmp=tmp_path)
    before = sorted(tmp_path.rglob("*"))
    # A missing run directory: were the paths checked after loading it, this would be the error.
    with pytest.raises(SystemExit) as exit_info:
        explain.main(["--model", str(tmp_path / "no_such_run"), "a wonderful film", flag, name])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"error: {flag} {name}: {message.format(tmp=tmp_path)}" in error
    assert "no_such_run" not in error
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize(
    "flag, name",
    [("--plot", "/proc/lstm-reviews-ledger.png"), ("--html", "/sys/lstm-reviews-ledger.html")],
)
def test_cli_write_refused_after_the_work_is_one_line(
    bi_run, tmp_path, capsys, monkeypatch, flag, name
):
    """/proc and /sys take no new files, though root passes the folder's check: the write
    fails after the trace, and says so in one line."""
    if not Path(name).parent.is_dir():
        pytest.skip(f"no {Path(name).parent} here")
    access = os.access  # as root sees it, whoever runs the test
    monkeypatch.setattr(
        os, "access", lambda path, mode: str(path) in ("/proc", "/sys") or access(path, mode)
    )
    assert explain.main(["--model", str(bi_run), "a wonderful film", flag, name]) == 2
    captured = capsys.readouterr()
    assert "logit" in captured.out  # the work was done
    (line,) = captured.err.splitlines()
    assert line.startswith(f"error: cannot write to {name}: ") and line.endswith(f" ({flag})")
    assert not Path(name).exists()


def _renamed_recurrent_layer(model: keras.Model) -> keras.Model:
    """The same model, its recurrent layer under a name build_model never gives."""

    def clone(layer):
        config = layer.get_config()
        if layer.name in ("lstm", "bidirectional_lstm"):
            config["name"] = "reader"
        return layer.__class__.from_config(config)

    renamed = keras.models.clone_model(model, clone_function=clone)
    renamed.set_weights(model.get_weights())
    return renamed


def test_the_recurrent_layer_is_found_by_type_not_name(forward_model):
    from lstm_reviews.model.classifier import recurrent_layer

    renamed = _renamed_recurrent_layer(forward_model)
    assert recurrent_layer(renamed).name == "reader"
    assert recurrent_layer(forward_model) is forward_model.get_layer("lstm")
    # The gate view finds it as the ledger does, and reads the same gates.
    inspector = inspection.build_inspector(renamed)
    trace = inspection.gate_trace(inspector, REVIEW)
    expected = inspection.gate_trace(inspection.build_inspector(forward_model), REVIEW)
    for name in ("h", "c", "input_gate", "forget_gate", "output_gate", "candidate"):
        np.testing.assert_array_equal(trace[name], expected[name], err_msg=name)


def _gate_model_calls(monkeypatch) -> list:
    """Records the name of every model predict_on_batch runs on, from now on."""
    calls = []
    original = keras.Model.predict_on_batch

    def counted(self, x):
        calls.append(self.name)
        return original(self, x)

    monkeypatch.setattr(keras.Model, "predict_on_batch", counted)
    return calls


def test_word_report_reads_each_batch_once_with_one_gate_model(
    bi_run, tiny_imdb, monkeypatch, capsys
):
    texts = list((tiny_imdb / "test").glob("*/*.txt"))
    batch_size = 3
    calls = _gate_model_calls(monkeypatch)
    argv = ["--model", str(bi_run), "--words", "amazing", "--data", str(tiny_imdb)]
    assert explain.main(argv + ["--batch-size", str(batch_size)]) == 0
    # One gate model, run once per batch: the gate means and the ledger share its outputs.
    assert calls == ["ledger_gates"] * -(-len(texts) // batch_size)
    assert f"word report over {len(texts)} test reviews" in capsys.readouterr().out


def test_trace_reads_the_gates_with_the_ledgers_gate_model(bi_run, monkeypatch):
    run = load_run(bi_run)
    calls = _gate_model_calls(monkeypatch)
    explain_review(run, "a wonderful film, amazing actors")
    gate_calls = [name for name in calls if name != run.model.name]
    assert gate_calls == ["ledger_gates", "ledger_gates"]  # the gate view, then the ledger


def test_one_pass_reports_equal_the_reports_made_apart(bi_run):
    run = load_run(bi_run)
    rng = np.random.default_rng(7)
    reviews = [rng.integers(2, len(VOCABULARY), size=n).astype(np.int32) for n in (3, 9, 5, 14)]
    words = ["amazing", "this", "nonword"]
    inspector = inspection.build_inspector(run.model)
    together = word_report.word_reports(run, inspector, reviews, words, batch_size=2)
    assert together["gates"] == word_report.word_report(run, inspector, reviews, words, 2)
    assert together["ledger"] == word_report.ledger_word_report(run, reviews, words, 2)
    assert together["gates"]["all_tokens"]["count"] == sum(map(len, reviews))
