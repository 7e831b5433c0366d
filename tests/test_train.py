"""Training end to end on the tiny fixture: run directory, one step, resume, CLI errors, JAX."""

from __future__ import annotations

import csv
import dataclasses
import errno
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import (
    TINY_ARGS,
    Interrupt,
    InterruptAfter,
    saved_test_accuracy,
    tiny_argv,
    write_run_dir,
)

from lstm_reviews import backend, export, train
from lstm_reviews.config import Config
from lstm_reviews.data import embeddings
from lstm_reviews.data.batches import NumpyBatches, epoch_batches, make_dataset, split_boundaries
from lstm_reviews.data.text import keep_last_tokens, pad
from lstm_reviews.data.tokens import TokenSplit, load_token_cache, prepare_tokens
from lstm_reviews.model import classifier
from lstm_reviews.options import config_from_args
from lstm_reviews.rundir import RunDir
from lstm_reviews.serving import versions
from lstm_reviews.training import pretrain
from lstm_reviews.training import run as training_run


def history_epochs(run_dir: Path) -> list[int]:
    with (run_dir / "history.csv").open(newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_one_epoch_end_to_end_writes_the_run_directory(tiny_imdb, tmp_path, capsys):
    assert train.main(tiny_argv(tiny_imdb, tmp_path, "--epochs", "1")) == 0
    run_dir = tmp_path / "run"
    for name in ("config.json", "history.csv", "model.keras", "metrics.json", "vocabulary.txt"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "logs").is_dir()
    assert not list(run_dir.glob(".partial-*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # The recorded accuracy is the saved model's on the 40 test reviews, recomputed here.
    assert metrics["test_accuracy"] == pytest.approx(saved_test_accuracy(run_dir), abs=1e-6)
    history = list(csv.DictReader((run_dir / "history.csv").open(newline="")))
    assert metrics["validation_accuracy"] == pytest.approx(float(history[0]["val_accuracy"]))
    for key in ("validation_loss", "test_loss"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0
    assert metrics["epochs"] == 1 and history_epochs(run_dir) == [0]
    assert metrics["tokens_per_second"] > 0 and metrics["wall_time_s"] > 0
    assert metrics["backend"] == keras.backend.backend()
    assert metrics["test_reviews"] == 40  # the fixture's 20 + 20 test reviews
    assert RunDir(run_dir).read_config().units == 4
    vocabulary = (run_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert vocabulary[:2] == ["", "[UNK]"] and len(vocabulary) <= 50
    assert "amazing" in vocabulary
    output = capsys.readouterr().out
    assert '"units": 4' in output  # the config is printed
    assert "val_accuracy" in output  # Keras' per-epoch progress line
    assert "lstm_reviews.export" in output  # --no-export says how to export later
    # The checkpoint is the ids -> logit model.
    model = keras.saving.load_model(run_dir / "model.keras")
    assert tuple(model(np.array([[2, 3, 0]], "int32")).shape) == (1, 1)


@pytest.mark.slow
def test_the_tiny_classifier_learns_the_separable_fixture(tiny_imdb, tmp_path):
    # Each tiny review holds one to three of its class's six sentiment words and none of the
    # other class's (helpers.write_tiny_imdb): a model that learns sorts nearly all of them.
    # Max pooling finds the one sentiment word of a review; no dropout, a high rate and 16
    # epochs of ten small batches: the tiny model's steps, not the recipe's.
    argv = tiny_argv(tiny_imdb, tmp_path, "--epochs", "16", "--patience", "16", "--lm-epochs", "0")
    argv += ["--learning-rate", "3e-2", "--dropout", "0", "--input-dropout", "0"]
    argv += ["--pooling", "max"]
    assert train.main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.8, metrics
    assert metrics["test_accuracy"] == pytest.approx(saved_test_accuracy(tmp_path / "run"))


@pytest.mark.slow
@pytest.mark.parametrize("pretrain", [True, False])
def test_training_starts_from_the_pretrained_word_vectors(tiny_imdb, tmp_path, pretrain):
    # A learning rate so small that the embedding stays where it started.
    flag = "--pretrain-embeddings" if pretrain else "--no-pretrain-embeddings"
    argv = tiny_argv(
        tiny_imdb, tmp_path, "--epochs", "1", "--learning-rate", "1e-12", flag, "--lm-epochs", "0"
    )
    assert train.main(argv) == 0
    config = config_from_args(argv)
    vectors = embeddings.pretrained_embeddings(config, prepare_tokens(config))
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    trained = model.get_layer("embedding").get_weights()[0]
    assert np.allclose(trained, vectors, atol=1e-6) == pretrain


@pytest.mark.slow
def test_training_starts_from_the_pretrained_language_model(tiny_imdb, tmp_path):
    argv = tiny_argv(
        tiny_imdb, tmp_path, "--epochs", "1", "--learning-rate", "1e-12", "--lm-epochs", "2"
    )
    assert train.main(argv) == 0
    config = config_from_args(argv)
    tokens = prepare_tokens(config)
    # Cached by the run: this call loads it.
    pretrained = pretrain.reader_weights(config, tokens)
    assert len(pretrained["history"]) == 2
    vectors = embeddings.pretrained_embeddings(config, tokens)
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    for name in ("embedding", "bidirectional_lstm"):
        for stored, trained in zip(
            pretrained[name], model.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_allclose(trained, stored, atol=1e-6)
    # The language model started from the word vectors and, by default, kept them frozen
    # (tests/test_pretrain.py: unfrozen, it moves them).
    np.testing.assert_array_equal(pretrained["embedding"][0], vectors)


@pytest.mark.slow
def test_one_training_step_changes_every_trainable_weight(tiny_imdb, tmp_path):
    config = config_from_args(tiny_argv(tiny_imdb, tmp_path))
    backend.set_up_backend(config)
    tokens = prepare_tokens(config)
    model = classifier.compile_model(classifier.build_model(config, len(tokens.vocabulary)), config)
    boundaries = split_boundaries(tokens.train, config)
    # (ids, labels) with dynamic shapes (the default under TensorFlow), weights with fixed ones.
    ids, labels, *weights = next(iter(epoch_batches(tokens.train, config, boundaries, epoch=0)))
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    logs = model.train_on_batch(ids, labels, sample_weight=(weights or [None])[0], return_dict=True)
    assert math.isfinite(logs["loss"])
    # A share of this batch's reviews (padding rows, if any, weigh 0), not of any other count.
    reviews = float(np.sum(weights[0])) if weights else len(labels)
    assert logs["accuracy"] * reviews == pytest.approx(round(logs["accuracy"] * reviews))
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert len(before) == 9  # embedding, 2 x (kernel, recurrent kernel, bias), logit kernel, bias
    for weight, old, new in zip(model.trainable_weights, before, after):
        assert not np.array_equal(old, new), f"{weight.path} did not change"


@pytest.mark.parametrize("make", ["tf", "numpy"])
def test_evaluation_leaves_the_padding_rows_out(make):
    # The padded, bucketed evaluation gives the accuracy and loss of the reviews alone.
    config = Config(
        vocab_size=50,
        max_length=30,
        embedding_dim=8,
        units=4,
        eval_batch_size=16,
        batch_shapes="fixed",
    )
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 45, size=70)
    split = TokenSplit(
        [rng.integers(2, 50, size=n).astype(np.int32) for n in lengths],
        rng.integers(0, 2, size=70).astype(np.int32),
    )
    keras.utils.set_random_seed(1)
    model = classifier.compile_model(classifier.build_model(config, 50), config)
    model.set_weights([w * 4 for w in model.get_weights()])  # logits well away from 0
    boundaries = split_boundaries(split, config)
    if make == "tf":
        made = make_dataset(split, 16, 30, boundaries=boundaries)
        padding_rows = sum(int((w.numpy() == 0).sum()) for _, _, w in made)
    else:
        made = NumpyBatches(split, 16, 30, boundaries=boundaries)
        padding_rows = sum(int((made[k][2] == 0).sum()) for k in range(len(made)))
    assert padding_rows >= 16  # a good share of the rows are padding: they must not count
    result = training_run.evaluate(model, made)

    # The reference: all reviews in one batch of no padding rows (padding steps only).
    ids = pad([keep_last_tokens(review, 30) for review in split.ids])
    logits = keras.ops.convert_to_numpy(model.predict_on_batch(ids))[:, 0].astype(np.float64)
    labels = split.labels
    assert result["accuracy"] == pytest.approx(np.mean((logits > 0) == labels), abs=1e-6)
    cross_entropy = np.mean(np.logaddexp(0.0, logits) - labels * logits)
    assert result["loss"] == pytest.approx(cross_entropy, rel=1e-5)


@pytest.mark.slow
def test_interrupted_run_resumes_where_it_stopped(tiny_imdb, tmp_path):
    argv = tiny_argv(tiny_imdb, tmp_path, "--epochs", "3", "--patience", "5")
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupt):
        train.train_and_evaluate(
            config_from_args(argv), callbacks=[InterruptAfter(1, 4)], backup_every_batches=2
        )
    # Backed up in epoch 1 (0-based) after its second batch; the stop came after the fourth,
    # before that batch's backup.
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["epochs_done"], state["step"]) == (1, 2)
    assert [row["epoch"] for row in state["history"]] == [0] and history_epochs(run_dir) == [0]
    assert not (run_dir / "metrics.json").exists()

    seen_epochs, first_batches = [], []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seen_epochs.append(epoch),
        on_train_batch_begin=lambda batch, logs: first_batches.append(batch),
    )
    metrics = train.train_and_evaluate(config_from_args(argv + ["--resume"]), callbacks=[recorder])
    assert seen_epochs == [1, 2]  # epoch 0 is not trained again
    assert first_batches[0] == state["step"]  # nor the batches of epoch 1 in the backup
    assert history_epochs(run_dir) == [0, 1, 2]  # every epoch exactly once
    assert metrics["epochs"] == 3


class SigintInsideDel:
    """Sends this process SIGINT from its __del__: Python's handler then runs there, where an
    exception is printed as ignored, as in TensorFlow's and Keras' own __del__ methods."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


class CtrlCAfter(keras.callbacks.Callback):
    def __init__(self, batches: int):
        super().__init__()
        self.batches = batches

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.batches:
            SigintInsideDel()  # deleted at once


@pytest.mark.slow
def test_ctrl_c_landing_inside_a_del_still_stops_the_run(tiny_imdb, tmp_path):
    argv = tiny_argv(tiny_imdb, tmp_path, "--epochs", "1", "--lm-epochs", "0")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(
            config_from_args(argv), callbacks=[CtrlCAfter(3)], backup_every_batches=2
        )
    assert signal.getsignal(signal.SIGINT) is before  # the handler before is back
    run_dir = tmp_path / "run"
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["epochs_done"], state["step"]) == (0, 2)  # stopped in epoch 1, kept batch 2
    assert not (run_dir / "metrics.json").exists()
    metrics = train.train_and_evaluate(config_from_args(argv + ["--resume"]))
    assert metrics["epochs"] == 1


# Holds the lock of each run directory named, as a training or export would, until killed.
HOLD_LOCKS = """
import sys, time
from lstm_reviews.rundir import RunDir
from lstm_reviews.serving import versions
held = [RunDir(path).locked() for path in sys.argv[1:]]
for lock in held:
    lock.__enter__()
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_run_directory_in_use_is_refused_until_its_holder_ends(tiny_imdb, tmp_path, capsys):
    finished, fresh = tmp_path / "finished", tmp_path / "fresh"
    write_run_dir(finished)  # a trained run (no state.json: not refused as unfinished)
    fresh.mkdir()
    quick = ("--epochs", "1", "--lm-epochs", "0")  # if a refusal fails, the run is short
    served = tmp_path / "served"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCKS, str(finished), str(fresh)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        assert holder.stdout.readline() == "held\n"
        assert train.main(tiny_argv(tiny_imdb, tmp_path, *quick, run="fresh")) == 2
        assert train.main(tiny_argv(tiny_imdb, tmp_path, *quick, "--resume", run="finished")) == 2
        assert export.main([str(finished), "--out", str(served)]) == 2
        errors = capsys.readouterr().err.splitlines()
        in_use = f"is in use by process {holder.pid}: it trains or exports this run"
        assert errors == [
            f"error: {fresh} {in_use}; wait for it to end, or stop it",
            f"error: {finished} {in_use}; wait for it to end, or stop it",
            f"error: {finished} {in_use}; wait for it to end, or stop it",
        ]
        assert not served.exists()
    finally:
        holder.kill()
        holder.wait()
    # Its lock died with it; the lock file it left is no run (a fresh run may start there).
    assert export.main([str(finished), "--out", str(served)]) == 0
    assert (served / "1" / "saved_model.pb").is_file()
    assert train.main(tiny_argv(tiny_imdb, tmp_path, *quick, run="fresh")) == 0
    assert (fresh / "metrics.json").is_file()


@pytest.mark.slow
def test_resume_of_no_run_is_refused_and_creates_nothing(tiny_imdb, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train.main(tiny_argv(tiny_imdb, tmp_path, "--resume")) == 2
    assert capsys.readouterr().err == (
        f"error: --resume: {run_dir} holds no run to resume (it does not exist)\n"
    )
    assert not run_dir.exists()
    # Files of someone else's, without a run's config.json: refused, left alone.
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine\n")
    assert train.main(tiny_argv(tiny_imdb, tmp_path, "--resume")) == 2
    assert "holds no run to resume (no config.json)" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_of_a_run_killed_before_it_wrote_anything_starts_it(tiny_imdb, tmp_path, capsys):
    """Issue #27: a kill while the tokens are made leaves the run directory with its lock file
    alone; --resume, as after any kill, must go on: here, start the run."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("12345\n")  # a dead holder's pid
    argv = tiny_argv(tiny_imdb, tmp_path, "--resume", "--epochs", "1", "--lm-epochs", "0")
    assert train.main(argv) == 0
    assert "holds nothing of its run yet (stopped early): starting it" in capsys.readouterr().out
    assert (run_dir / "metrics.json").is_file()


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(tiny_imdb, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    RunDir(run_dir).write_config(Config(units=4))
    code = train.main(tiny_argv(tiny_imdb, tmp_path, "--resume", "--units", "5"))
    assert code == 2
    assert "--units 4 -> 5" in capsys.readouterr().err


@pytest.mark.slow
def test_same_seed_gives_the_same_run(tiny_imdb, tmp_path):
    results = []
    for run in ("a", "b"):
        config = config_from_args(tiny_argv(tiny_imdb, tmp_path, "--epochs", "2", run=run))
        results.append(train.train_and_evaluate(config))
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]
    assert results[0]["test_loss"] == pytest.approx(results[1]["test_loss"], abs=1e-6)


@pytest.mark.slow
def test_missing_data_path_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "no_such_dir"
    code = train.main(
        [
            *TINY_ARGS,
            "--data",
            str(missing),
            "--output-dir",
            str(tmp_path / "run"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert str(missing) in err and "Traceback" not in err


@pytest.mark.slow
def test_existing_run_dir_without_resume_exits_2(tiny_imdb, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.keras").write_text("an earlier run's model")
    code = train.main(tiny_argv(tiny_imdb, tmp_path))
    err = capsys.readouterr().err
    assert code == 2
    assert str(run_dir) in err and "--resume" in err and "Traceback" not in err
    assert (run_dir / "model.keras").read_text() == "an earlier run's model"  # untouched


@pytest.mark.slow
def test_output_dir_that_is_a_file_exits_2(tiny_imdb, tmp_path, capsys):
    (tmp_path / "run").write_text("not a folder")
    assert train.main(tiny_argv(tiny_imdb, tmp_path)) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"error: --output-dir {tmp_path / 'run'} is a file; expected a directory for the run\n"
    )
    assert (tmp_path / "run").read_text() == "not a folder"  # untouched


def test_resuming_a_run_trained_with_a_removed_option_exits_2_naming_it(
    tiny_imdb, tmp_path, capsys
):
    # A run of a version with --layer-lr-decay, trained with it: this version cannot build
    # its optimizer, so --resume (and export, which reads the same config.json) refuse it.
    argv = tiny_argv(tiny_imdb, tmp_path, "--resume")
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    run_dir.write_config(config_from_args(argv))
    values = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**values, "layer_lr_decay": 0.5}))
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: this run was trained with --layer-lr-decay 0.5, an option")
    assert len(err.splitlines()) == 1


@pytest.mark.slow
def test_resume_with_a_damaged_state_and_none_before_exits_2_naming_it(tiny_imdb, tmp_path, capsys):
    argv = tiny_argv(tiny_imdb, tmp_path, "--resume")
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    run_dir.write_config(config_from_args(argv))
    state = run_dir / "state.json"
    state.write_text('{"epochs_done": 1, "st')  # cut short (a disk that lost the end)
    assert train.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"warning: {state} is damaged (")
    assert err[1] == (
        f"error: --resume: {state} is damaged and there is no earlier state; "
        f"delete {run_dir.path} to train the run again"
    )
    assert len(err) == 2


class PoisonWeights(keras.callbacks.Callback):
    """Sets the logit layer's weights to NaN before one batch: that batch's loss is NaN."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch, self.current = epoch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.current == self.epoch and batch == 1:
            for weight in self.model.get_layer("logit").weights:
                weight.assign(np.full(weight.shape, np.nan, "float32"))


@pytest.mark.slow
def test_nan_loss_fails_the_run_without_metrics(tiny_imdb, tmp_path):
    config = config_from_args(tiny_argv(tiny_imdb, tmp_path, "--epochs", "3", "--patience", "5"))
    with pytest.raises(RuntimeError, match="stopped on a NaN loss in epoch 2: no metrics.json"):
        train.train_and_evaluate(config, callbacks=[PoisonWeights(epoch=1)])
    run_dir = tmp_path / "run"
    assert not (run_dir / "metrics.json").exists()  # nothing claims success
    assert history_epochs(run_dir)[0] == 0  # the good first epoch is kept
    assert 3 not in [epoch + 1 for epoch in history_epochs(run_dir)]  # training stopped


@pytest.mark.slow
def test_bad_option_value_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--units", "0", "--output-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert "--units must be positive" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_exits_130_saying_what_is_on_disk(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    started = []

    def interrupted(config, *args, **kwargs):
        if started:  # the second time, the run directory holds a config: it can resume
            RunDir(run_dir).write_config(config)
        started.append(True)
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_and_evaluate", interrupted)
    assert train.main(["--output-dir", str(run_dir)]) == 130
    err = capsys.readouterr().err
    assert "nothing was saved" in err and "--resume" not in err
    assert train.main(["--output-dir", str(run_dir)]) == 130
    err = capsys.readouterr().err
    assert "--resume" in err and str(run_dir) in err


@pytest.mark.slow
def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def broken(config, *args, **kwargs):
        raise ValueError("a bug, not a user mistake")

    monkeypatch.setattr(train, "train_and_evaluate", broken)
    with pytest.raises(ValueError, match="a bug"):
        train.main(["--output-dir", str(tmp_path / "run")])


@pytest.mark.slow
def test_help_documents_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    for flag in (
        "--data",
        "--vocab-size",
        "--max-length",
        "--embedding-dim",
        "--units",
        "--bidirectional",
        "--dropout",
        "--batch-size",
        "--epochs",
        "--learning-rate",
        "--seed",
        "--output-dir",
        "--resume",
        "--pooling",
        "--no-export",
    ):
        assert flag in out, flag
    assert "(default: 1337)" in out


# Trains under JAX in a fresh interpreter with TensorFlow made unimportable: the token
# cache built here (with TensorFlow) must be all the JAX run needs.
JAX_SCRIPT = """
import sys
sys.modules["tensorflow"] = None  # any `import tensorflow` now fails
from lstm_reviews import train
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_trains_under_jax_without_tensorflow(tiny_imdb, tmp_path):
    pytest.importorskip("jax", reason="the JAX backend is not installed")
    # max_length 8 cuts nearly every tiny review to 8 tokens: few distinct batch shapes, so
    # few XLA compilations (JAX compiles the step once per shape).
    # Fixed shapes on both sides ("auto" would be dynamic here, fixed under JAX): the
    # language-model cache made here is the one the JAX run looks for.
    argv = tiny_argv(
        tiny_imdb, tmp_path, "--epochs", "1", "--max-length", "8", "--batch-shapes", "fixed"
    )
    config = config_from_args(argv)
    # The caches, made with TensorFlow: token ids, the word vectors, the language model.
    tokens = prepare_tokens(config)
    pretrain.reader_weights(config, tokens)  # makes the word vectors on the way
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["backend"] == "jax"
    assert metrics["epochs"] == 1
    # The JAX run's model.keras, read here under TensorFlow, scores what the run recorded (a
    # review whose logit is within float error of 0 may flip between backends).
    recomputed = saved_test_accuracy(tmp_path / "run")
    assert abs(metrics["test_accuracy"] - recomputed) <= 1 / metrics["test_reviews"] + 1e-6
    assert "KERAS_BACKEND=tensorflow python -m lstm_reviews.export" in result.stdout


# A cold start under JAX with TensorFlow installed: the text side (token ids, unlabeled ids,
# word vectors) runs on TensorFlow, the model on JAX.
COLD_JAX_SCRIPT = """
import sys
from lstm_reviews import train
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_trains_under_jax_from_a_cold_start(tiny_imdb, tmp_path):
    pytest.importorskip("jax", reason="the JAX backend is not installed")
    # One length bucket: each batch shape is an XLA compilation under JAX, and what is
    # checked here is where the caches are made (bucketed under JAX: the test above and
    # tests/test_gpu_bundle.py).
    argv = tiny_argv(tiny_imdb, tmp_path, "--epochs", "1", "--lm-epochs", "1")
    argv += ["--eval-batch-size", "8", "--no-bucket-by-length"]
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", COLD_JAX_SCRIPT, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["epochs"] == 1
    cache = tmp_path / "cache"
    for kind in ("tokens", "unlabeled", "vectors", "reader"):
        assert len(list(cache.glob(f"{kind}-*"))) == 1, kind  # each made under JAX
    # The token ids made under JAX are those made here under the session's backend.
    (made_under_jax,) = cache.glob("tokens-*.npz")
    jax_tokens = load_token_cache(made_under_jax)
    here = prepare_tokens(
        dataclasses.replace(config_from_args(argv), cache_dir=str(tmp_path / "here"))
    )
    assert jax_tokens.vocabulary == here.vocabulary
    for name in ("train", "validation", "test"):
        assert [x.tolist() for x in getattr(jax_tokens, name).ids] == [
            x.tolist() for x in getattr(here, name).ids
        ]


@pytest.mark.slow
def test_cache_dir_that_is_a_file_is_one_line_before_the_work(tiny_imdb, tmp_path, capsys):
    cache_file = tmp_path / "cache"
    cache_file.write_text("not a folder")
    assert train.main(tiny_argv(tiny_imdb, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"error: cannot write to {cache_file}: it is a file, not a folder (--cache-dir)"
    )
    assert cache_file.read_text() == "not a folder"


@pytest.mark.slow
def test_run_dir_turned_read_only_mid_run_is_one_line(tiny_imdb, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    replace, commits = os.replace, []

    def read_only_after_two_commits(source, target):
        if Path(target) == run_dir / "state.json":
            commits.append(target)
            if len(commits) > 2:  # within the first epoch: the file system went read-only
                raise OSError(errno.EROFS, "Read-only file system", source, None, target)
        replace(source, target)

    monkeypatch.setattr(os, "replace", read_only_after_two_commits)
    assert train.main(tiny_argv(tiny_imdb, tmp_path, "--epochs", "1")) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"error: cannot write to {run_dir / 'state.json'}: Read-only file system (--output-dir)"
    )
    assert not list(run_dir.glob(".state.json.*"))  # no temporary left behind


@pytest.mark.slow
def test_disk_full_in_the_final_export_is_one_line(tiny_imdb, tmp_path, monkeypatch, capsys):
    if not backend.runs_on_tensorflow():
        pytest.skip("the export needs the TensorFlow backend")
    import tensorflow as tf

    models = tmp_path / "models"

    def disk_full(archive, path):  # TensorFlow's save, as a full disk ends it
        (path / "saved_model.pb").write_bytes(b"half")
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{path}/variables/variables.data-00000-of-00001; No space left on device"
        )

    monkeypatch.setattr(versions, "write_saved_model", disk_full)
    argv = tiny_argv(tiny_imdb, tmp_path, "--epochs", "1", "--export", "--export-dir", str(models))
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"error: cannot write to {models}: No space left on device (--export-dir)"
    )
    assert list(models.iterdir()) == []  # no version, no staging directory
    assert (tmp_path / "run" / "metrics.json").is_file()  # trained: --resume exports it


@pytest.mark.slow
def test_a_hand_edited_config_is_named_not_called_damage(tiny_imdb, tmp_path, capsys):
    argv = tiny_argv(tiny_imdb, tmp_path, "--epochs", "2")
    run_dir = RunDir(tmp_path / "run")
    with pytest.raises(Interrupt):
        train.train_and_evaluate(
            config_from_args(argv), callbacks=[InterruptAfter(0, 2)], backup_every_batches=1
        )
    config_file = run_dir / "config.json"
    values = json.loads(config_file.read_text())
    values["units"] = 5  # a hand edit, and the options to match it
    config_file.write_text(json.dumps(values))
    edited = argv + ["--resume", "--units", "5"]
    assert train.main(edited) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: --resume: {config_file} differs from the settings the run was trained with, "
        f'which {run_dir / "state.json"} records under "config": units 4 (config.json: 5); its '
        f"backups are whole: restore config.json to those settings and resume with them"
    ]
    # A run from before the state recorded its settings: the whole backup that does not fit
    # the model says the same, not "damaged".
    for name in ("state.json", "state.previous.json"):
        state = json.loads((run_dir / name).read_text())
        del state["config"]
        (run_dir / name).write_text(json.dumps(state))
    assert train.main(edited) == 2
    err = capsys.readouterr().err
    assert "damaged" not in err and "delete" not in err
    backup = run_dir.backup / json.loads((run_dir / "state.json").read_text())["backup"]
    assert err.splitlines()[-1].startswith(f"error: --resume: {backup} is whole")
    assert "was config.json edited?" in err
    # Restored, the run resumes and finishes.
    values["units"] = 4
    config_file.write_text(json.dumps(values))
    assert train.main(argv + ["--resume"]) == 0
    assert history_epochs(run_dir.path) == [0, 1]
