"""The package from Python (lstm_reviews.api): train, load_run, Run.predict, Run.explain,
Run.export, Predictor; and `import lstm_reviews` without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, write_tiny_imdb

import lstm_reviews
from lstm_reviews import explain
from lstm_reviews.data import text
from lstm_reviews.errors import UserError

POSITIVE = "A wonderful film, the actors were brilliant and I loved the story."
NEGATIVE = "Awful plot. The worst movie of the year, boring and dull."
REVIEWS = [POSITIVE, NEGATIVE, "Great.", POSITIVE + " " + NEGATIVE * 3]
TOL = 1e-5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run trained through the API (seconds): every test here reads it."""
    root = tmp_path_factory.mktemp("api")
    config = lstm_reviews.Config(
        data=str(write_tiny_imdb(root / "data")),
        cache_dir=str(root / "cache"),
        output_dir=str(root / "unused"),  # run_dir below wins
        **TINY,
        epochs=1,
        lm_epochs=0,
        export=False,
    )
    return lstm_reviews.train(config, root / "run")


@pytest.mark.slow
def test_import_lstm_reviews_does_not_load_tensorflow():
    # A fresh interpreter: this one has TensorFlow loaded by the other tests.
    code = (
        "import sys, lstm_reviews\n"
        "names = (lstm_reviews.Config, lstm_reviews.__version__)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'loaded'\n"
        "assert {'train', 'load_run', 'Run', 'Predictor', 'Explanation'} <= set(dir(lstm_reviews))"
    )
    environment = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment
    )
    assert completed.returncode == 0, completed.stderr[-2000:]


@pytest.mark.slow
def test_train_returns_the_finished_run(trained):
    assert isinstance(trained, lstm_reviews.Run)
    assert trained.path.name == "run" and (trained.path / "metrics.json").is_file()
    assert not (trained.path.parent / "unused").exists()
    assert trained.config.units == 4 and trained.vocabulary[:2] == ["", "[UNK]"]
    # The command's module stays what it was beside the call.
    assert callable(lstm_reviews.train.train_and_evaluate)


@pytest.mark.slow
def test_load_run_reads_the_run_train_returned(trained):
    run = lstm_reviews.load_run(trained.path)
    assert isinstance(run, lstm_reviews.Run)
    assert run.config == trained.config and run.vocabulary == trained.vocabulary
    ids = text.pad(run.encode(REVIEWS))
    np.testing.assert_allclose(run.model.predict(ids, verbose=0), trained.model(ids), atol=TOL)
    with pytest.raises(UserError, match="does not exist"):
        lstm_reviews.load_run(trained.path / "missing")


@pytest.mark.slow
def test_predict_gives_each_review_its_own_verdict(trained):
    predictions = trained.predict(REVIEWS + [""])
    assert [sorted(p) for p in predictions] == [["label", "logit", "probability", "tokens"]] * 5
    for review, prediction in zip(REVIEWS, predictions):
        ids = trained.encode([review])[0]
        alone = float(trained.model(ids[None, :])[0, 0])  # the review in a batch of its own
        assert prediction["tokens"] == len(ids) > 0
        assert prediction["logit"] == pytest.approx(alone, abs=TOL)
        assert prediction["probability"] == pytest.approx(1 / (1 + np.exp(-alone)), abs=TOL)
        assert prediction["label"] == (
            "positive" if prediction["probability"] >= 0.5 else "negative"
        )
    assert predictions[-1]["tokens"] == 0 and 0 < predictions[-1]["probability"] < 1
    [alone] = trained.predict(POSITIVE)  # one str is one review
    assert alone["probability"] == pytest.approx(predictions[0]["probability"], abs=TOL)


@pytest.mark.slow
def test_explain_returns_one_explanation(trained, tmp_path, capsys):
    explanation = trained.explain(POSITIVE)
    assert isinstance(explanation, lstm_reviews.Explanation)
    tokens = [trained.vocabulary[k] for k in trained.encode([POSITIVE])[0]]
    assert explanation.tokens == tokens
    assert explanation.shares.shape == (len(tokens),)
    assert explanation.shares.sum() == pytest.approx(explanation.logit - explanation.bias, abs=TOL)
    assert set(explanation.gates) == {"input_gate", "forget_gate", "output_gate"}
    assert all(values.shape == (len(tokens),) for values in explanation.gates.values())
    assert explanation.probability == pytest.approx(
        trained.predict(POSITIVE)[0]["probability"], abs=TOL
    )

    table = explanation.table()
    assert table.splitlines()[0] == f"model: {trained.path} (4 units)"
    assert table.endswith(f"sum of A {explanation.shares.sum():+.4f}")
    assert explanation.plot(tmp_path / "ledger.png").read_bytes().startswith(b"\x89PNG")
    page = explanation.html(tmp_path / "ledger.html").read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") and "Gate view" in page

    # The command prints the very table the API gives.
    capsys.readouterr()
    assert explain.main(["--model", str(trained.path), POSITIVE]) == 0
    assert table in capsys.readouterr().out
    with pytest.raises(UserError, match="no tokens"):
        trained.explain("<br /> ... ;;")  # markup and punctuation only


@pytest.mark.slow
def test_export_publishes_a_version_predictor_reads_alike(trained, tmp_path):
    first = trained.export(tmp_path / "models")
    second = trained.export(tmp_path / "models")
    assert (first.name, second.name) == ("1", "2") and (second / "saved_model.pb").is_file()
    served = lstm_reviews.Predictor(tmp_path / "models")(REVIEWS)
    predicted = trained.predict(REVIEWS)
    for from_savedmodel, from_run in zip(served, predicted):
        assert from_savedmodel["label"] == from_run["label"]
        assert from_savedmodel["tokens"] == from_run["tokens"]
        assert from_savedmodel["probability"] == pytest.approx(from_run["probability"], abs=TOL)
    from lstm_reviews.predict import Predictor  # where the command line finds it

    assert Predictor is lstm_reviews.Predictor
