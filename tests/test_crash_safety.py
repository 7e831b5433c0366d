"""A training run killed at any moment resumes to the uninterrupted run's metrics and files.

Real `python -m lstm_reviews.train` processes on the tiny tree, killed with SIGKILL (or sent
SIGINT) at named points (lstm_reviews.crashpoints: $LSTM_REVIEWS_CRASH_AT), then resumed with
--resume. One uninterrupted reference run per module; one run directory is killed at every
moment in turn, from the language-model pretraining to the export, and must end as the
reference did.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import tiny_argv, write_tiny_imdb

from lstm_reviews import train
from lstm_reviews.crashpoints import ENVIRONMENT_VARIABLE
from lstm_reviews.options import config_from_args
from lstm_reviews.rundir import RunDir

# 6 language-model batches, then 3 epochs of 15 batches (every 2 batches a backup); a
# learning rate at which the tiny reviews' validation accuracy moves, so the best epoch is
# not simply the first (it does with the recipe below; a resumed run of the default
# adversarial recipe is checked in tests/test_recipe.py).
ARGS = [
    "--vocab-size", "50", "--max-length", "40", "--embedding-dim", "8", "--units", "4",
    "--batch-size", "8", "--epochs", "3", "--patience", "5", "--learning-rate", "2e-2",
    "--lm-epochs", "1", "--lm-batch-size", "16", "--adversarial-epsilon", "0",
    "--vocabulary-from", "train", "--seed", "1",  # a seed whose best epoch is not the first
]  # fmt: skip
COMPARED = ("validation_accuracy", "validation_loss", "test_accuracy", "test_loss", "best_epoch")


def run_training(args: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(ENVIRONMENT_VARIABLE, None)
    if crash_at:
        env[ENVIRONMENT_VARIABLE] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "lstm_reviews.train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        # A shell's background job (CI started with `&`, nohup) ignores SIGINT, and a child
        # inherits that: Python then installs no KeyboardInterrupt handler and Ctrl-C is lost.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def explain(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout[-1500:]}\n{result.stderr[-2500:]}"


def read_state(run_dir: Path) -> dict:
    return json.loads((run_dir / "state.json").read_text())


def assert_same_run(run_dir: Path, reference: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = json.loads((reference / "metrics.json").read_text())
    assert {key: metrics[key] for key in COMPARED} == {key: expected[key] for key in COMPARED}
    assert (run_dir / "history.csv").read_text() == (reference / "history.csv").read_text()
    assert read_state(run_dir)["history"] == read_state(reference)["history"]
    assert (run_dir / "vocabulary.txt").read_text() == (reference / "vocabulary.txt").read_text()
    assert not list(run_dir.glob(".*.keras")), "a pending or partial model was left"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash")
    write_tiny_imdb(root / "data")
    return root


def common_args(workspace: Path, run: str, *extra: str, cache: str = "reference") -> list[str]:
    return [
        *ARGS,
        "--data",
        str(workspace / "data" / "aclImdb"),
        "--cache-dir",
        str(workspace / f"cache-{cache}"),
        "--output-dir",
        str(workspace / run),
        *extra,
    ]


@pytest.fixture(scope="module")
def reference(workspace) -> Path:
    """The uninterrupted run."""
    result = run_training(common_args(workspace, "reference", "--no-export"))
    assert result.returncode == 0, explain(result)
    history = read_state(workspace / "reference")["history"]
    # The kills below fall where they must only if the run is as planned.
    assert len(history) == 3 and read_state(workspace / "reference")["best_epoch"] > 1
    return workspace / "reference"


@pytest.mark.slow
def test_a_run_killed_at_every_moment_resumes_to_the_uninterrupted_run(workspace, reference):
    run_dir = workspace / "killed"
    export_dir = workspace / "exported"
    # Caches of its own: the language model is pretrained again, not loaded from the reference's.
    args = common_args(workspace, "killed", "--export-dir", str(export_dir), cache="killed")

    def kill_at(point: str, *, resume: bool = True) -> subprocess.CompletedProcess:
        result = run_training(args + ["--resume"] * resume, crash_at=point)
        assert result.returncode == -signal.SIGKILL, f"{point}: {explain(result)}"
        return result

    # In the language-model pretraining, after its third batch: nothing of the sentiment
    # training is saved yet; the pretraining starts again.
    result = kill_at("pretrain-step:3", resume=False)
    assert "Language-model pretraining" in result.stdout and not (run_dir / "state.json").exists()
    # Mid-epoch: after batch 5 of epoch 1; the backup of batch 4 holds the position.
    kill_at("epoch-step:5")
    assert (read_state(run_dir)["epochs_done"], read_state(run_dir)["step"]) == (0, 4)
    # Inside the best model's save at the end of epoch 1 (resumed at batch 14 of 15).
    kill_at("checkpoint-save")
    assert not (run_dir / "model.keras").exists() and read_state(run_dir)["epochs_done"] == 0
    # Inside the write of epoch 1's backup: half of it on disk under a temporary name.
    kill_at("backup-write")
    assert [path.name for path in (run_dir / "backup").glob(".epoch-1.npz.*")]
    # Between the backup and the commit of the history row.
    kill_at("after-backup")
    assert read_state(run_dir)["history"] == []
    # Between the commit and the renaming of the best model into place: model.keras missing,
    # the state names epoch 1 best; the resumed run must find that model, not lose it.
    kill_at("after-commit")
    state = read_state(run_dir)
    assert (state["epochs_done"], state["best_epoch"]) == (1, 1)
    assert (run_dir / ".best-epoch-1.keras").exists() and not (run_dir / "model.keras").exists()

    # A torn backup: the run names it and falls back to the state before (batch 14 of epoch 1).
    torn = run_dir / "backup" / state["backup"]
    torn.write_bytes(torn.read_bytes()[:100])
    # Ctrl-C in epoch 2, as SIGINT: exit 130 saying how to resume.
    result = run_training(args + ["--resume"], crash_at="epoch-step:3:SIGINT")
    assert result.returncode == 130, explain(result)
    assert f"warning: {torn} is damaged" in result.stderr
    assert "falling back to the state before state.json" in result.stderr
    assert "--resume" in result.stderr.splitlines()[-1]
    assert (run_dir / "model.keras").exists()  # epoch 1 trained again, its model in place

    # A torn state.json: named, and the previous state serves.
    state_file = run_dir / "state.json"
    state_file.write_text(state_file.read_text()[:50])
    result = kill_at("after-fit")
    assert f"warning: {state_file} is damaged" in result.stderr
    assert read_state(run_dir)["fit_done"] and not (run_dir / "metrics.json").exists()
    # During the export: evaluated, a version half written in a hidden staging folder.
    kill_at("export")
    assert read_state(run_dir)["evaluated"] and read_state(run_dir)["exported"] is None
    assert [path.name for path in export_dir.iterdir()][0].startswith(".export-")
    # Between the publishing of version 1 and the commit naming it: the resumed run must
    # record version 1, not publish the same run again as version 2.
    kill_at("after-export")
    assert [path.name for path in export_dir.iterdir()] == ["1"]
    assert read_state(run_dir)["exported"] is None

    result = run_training(args + ["--resume"])
    assert result.returncode == 0, explain(result)
    assert "exporting" in result.stdout
    assert_same_run(run_dir, reference)
    assert [path.name for path in export_dir.iterdir()] == ["1"]  # the staging folder is gone
    assert (export_dir / "1" / "saved_model.pb").is_file()
    assert read_state(run_dir)["exported"] == str(export_dir / "1")
    # Finished means finished: a further --resume trains nothing.
    result = run_training(args + ["--resume"])
    assert result.returncode == 2 and "already finished" in result.stderr, explain(result)


@pytest.mark.slow
def test_ctrl_c_in_pretraining_or_validation_stops_there_and_resumes(workspace, reference):
    """SIGINT at moments inside Keras' fit and evaluate: exit 130 saying --resume, what was
    done kept, and the resumed run ends as the uninterrupted one."""
    run_dir = workspace / "ctrl_c"
    # Caches of its own: the language model is pretrained, not loaded from the reference's.
    args = common_args(workspace, "ctrl_c", "--no-export", cache="ctrl_c")

    def interrupt_at(point: str, *, resume: bool = True) -> subprocess.CompletedProcess:
        result = run_training(args + ["--resume"] * resume, crash_at=f"{point}:SIGINT")
        assert result.returncode == 130, f"{point}: {explain(result)}"
        assert "Ctrl-C: stopping after this step" in result.stderr
        last = result.stderr.splitlines()[-1]
        assert last.startswith("Interrupted.") and "--resume" in last, explain(result)
        return result

    # In the language model's second batch: stopped there, no sentiment training started.
    result = interrupt_at("pretrain-step:2", resume=False)
    assert "Language-model pretraining" in result.stdout and not (run_dir / "state.json").exists()
    assert "Epoch 1/3" not in result.stdout
    # In epoch 1's validation: the epoch ends and is committed (it was not lost).
    interrupt_at("validation-step:1")
    state = read_state(run_dir)
    assert state["epochs_done"] == 1 and [row["epoch"] for row in state["history"]] == [0]
    assert (run_dir / "model.keras").exists() and not (run_dir / "metrics.json").exists()

    result = run_training(args + ["--resume"])
    assert result.returncode == 0, explain(result)
    assert_same_run(run_dir, reference)


@pytest.mark.slow
def test_resume_refuses_other_data(workspace, reference, capsys):
    run_dir = workspace / "other_data"
    shutil.copytree(reference, run_dir)
    moved = workspace / "moved"
    shutil.copytree(workspace / "data", moved)
    args = common_args(workspace, "other_data", "--no-export", "--resume")
    assert train.main([*args, "--data", str(moved / "aclImdb")]) == 2
    err = capsys.readouterr().err
    assert "--resume: the data differ" in err and str(moved / "aclImdb") in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_resume_refuses_another_vocabulary(workspace, reference, capsys):
    run_dir = workspace / "other_vocabulary"
    shutil.copytree(reference, run_dir)
    vocabulary = (run_dir / "vocabulary.txt").read_text().split("\n")
    vocabulary[2], vocabulary[3] = vocabulary[3], vocabulary[2]
    (run_dir / "vocabulary.txt").write_text("\n".join(vocabulary))
    assert train.main(common_args(workspace, "other_vocabulary", "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --resume: {run_dir / 'vocabulary.txt'}")
    assert f"first at line 3: {vocabulary[2]!r} -> {vocabulary[3]!r}" in err


@pytest.mark.slow
@pytest.mark.torch_rerun
@pytest.mark.torch_only  # TensorFlow: the test above; JAX: test_recipe's resumed default recipe
def test_the_default_recipe_killed_mid_epoch_resumes_to_the_uninterrupted_run(tiny_imdb, tmp_path):
    """Under PyTorch (tests/test_backends.py), the default recipe (language-model pretraining,
    adversarial training): a run killed with SIGKILL mid-epoch, in a process of its own, and
    resumed here ends as the run trained here without a break."""
    options = ["--epochs", "1", "--max-length", "20", "--batch-size", "16", "--lm-epochs", "1"]
    whole = train.train_and_evaluate(
        config_from_args(tiny_argv(tiny_imdb, tmp_path, *options, run="whole", plain=False))
    )
    argv = tiny_argv(tiny_imdb, tmp_path, *options, run="killed", plain=False)
    result = run_training(argv, crash_at="epoch-step:3")  # its caches: those of the run above
    assert result.returncode == -signal.SIGKILL, explain(result)
    # TensorFlow, imported to be seeded too, came in quietly as under its own backend.
    assert "absl::InitializeLog" not in result.stderr, result.stderr[-2000:]
    state = read_state(tmp_path / "killed")
    assert (state["epochs_done"], state["history"]) == (0, [])
    assert 0 < state["step"] < 3  # a backup from within the epoch holds the position
    resumed = train.train_and_evaluate(config_from_args([*argv, "--resume"]))
    assert {key: resumed[key] for key in COMPARED} == {key: whole[key] for key in COMPARED}
    assert_same_run(tmp_path / "killed", tmp_path / "whole")


@pytest.mark.torch_rerun
def test_runs_on_the_requested_backend():
    """tests/test_backends.py reruns part of this module with KERAS_BACKEND set."""
    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", keras.backend.backend())


def test_state_and_backups_reach_the_disk_before_their_rename(tmp_path, monkeypatch):
    """A power cut after the rename must not find a state.json or backup whose bytes were
    never written: each file is fsynced before its rename, and the directory after it."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source, target):
        events.append(("replace", str(source), str(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    run_dir = RunDir(tmp_path / "run")
    run_dir.write_state({"epochs_done": 0})
    run_dir.write_backup("epoch-1.npz", {"0": np.zeros(3)})
    for target in (run_dir / "state.json", run_dir.backup / "epoch-1.npz"):
        index, source = next(
            (k, event[1]) for k, event in enumerate(events) if event[2:] == (str(target),)
        )
        assert ("fsync", source) in events[:index], f"{target} renamed before its fsync"
        assert ("fsync", str(target.parent)) in events[index:], f"{target.parent} not synced"
