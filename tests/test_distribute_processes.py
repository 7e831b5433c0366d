"""--distribute data over two processes on localhost (jax.distributed, one virtual CPU device
each), as over two hosts: the same losses and metrics as one process, and process 0 alone
writes. Plus the launch settings' errors."""

from __future__ import annotations

import ast
import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_argv

from lstm_reviews.config import Config
from lstm_reviews.errors import UserError
from lstm_reviews.training import distribute

ROOT = Path(__file__).resolve().parents[1]

# Runs lstm_reviews.train and then prints every file it wrote, removed or renamed under
# argv[1] (Python's audit events: open for writing, rename, remove, mkdir, rmtree).
WATCHED_TRAIN = """
import atexit, os, runpy, sys
watched = os.path.realpath(sys.argv.pop(1))
writes = []
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & WRITING
    elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"):
        path, writing = args[0], True
    else:
        return
    if writing and isinstance(path, (str, bytes, os.PathLike)):
        path = os.path.realpath(os.fsdecode(path))
        if path.startswith(watched):
            writes.append(path)
atexit.register(lambda: print("WRITES " + repr(sorted(set(writes))), flush=True))
sys.addaudithook(hook)
sys.argv[0] = "train"
runpy.run_module("lstm_reviews.train", run_name="__main__", alter_sys=True)
"""


def _environment(devices: int = 1, **extra) -> dict:
    return {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        **extra,
    }


def _two_processes(argv: list[str], watched: Path) -> list[tuple[int, str, list]]:
    """Runs train with argv as processes 0 and 1 of a run; [(exit status, output, files
    written under `watched`)] of each."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    started = [
        subprocess.Popen(
            [sys.executable, "-c", WATCHED_TRAIN, str(watched), *argv],
            env=_environment(
                KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{port}",
                KERAS_DISTRIBUTION_NUM_PROCESSES="2",
                KERAS_DISTRIBUTION_PROCESS_ID=str(index),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(2)
    ]
    done = []
    for process in started:
        output = process.communicate(timeout=900)[0]
        line = [line for line in output.splitlines() if line.startswith("WRITES ")]
        done.append((process.returncode, output, ast.literal_eval(line[-1][7:]) if line else None))
    return done


def _history(run_dir: Path) -> dict[str, np.ndarray]:
    with (run_dir / "history.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    return {key: np.array([float(row[key]) for row in rows]) for key in keys}


def _files(run_dir: Path) -> set[str]:
    """The run's files; TensorBoard's by folder (their names hold the host, pid and time)."""
    names = {str(path.relative_to(run_dir)) for path in run_dir.rglob("*") if path.is_file()}
    return {str(Path(name).parent) if name.startswith("logs") else name for name in names}


@pytest.mark.slow
def test_two_processes_train_as_one(tiny_imdb, tmp_path):
    """The same run as one process on one device and as two processes of one device each,
    side by side: word vectors, an epoch of language-model pretraining (under the same
    distribution; what it leaves starts the reader, so a difference there shows in every
    later loss), two epochs. One length bucket: a compilation or two, not one per bucket."""
    extra = ["--epochs", "2", "--lm-epochs", "1", "--lm-batch-size", "8"]
    extra += ["--no-bucket-by-length"]
    one = subprocess.Popen(
        [sys.executable, "-m", "lstm_reviews.train"]
        + tiny_argv(tiny_imdb, tmp_path, *extra, "--distribute", "off", run="one"),
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    two = _two_processes(
        tiny_argv(tiny_imdb, tmp_path / "shared", *extra, "--distribute", "data", run="two"),
        tmp_path / "shared",
    )
    output = one.communicate(timeout=900)[0]
    assert one.returncode == 0, output[-3000:]
    for status, output, _ in two:
        assert status == 0, output[-3000:]
    assert "Data parallel over 2 devices" in two[0][1]
    # Process 1 wrote nothing, not even in the cache; process 0 wrote the run's files.
    assert two[1][2] == [], two[1][2]
    assert any(path.endswith("state.json") for path in two[0][2])
    # Steps on 2 devices of 2 processes are the one-device steps up to the order of float32
    # sums (each device sums its half of the batch, then the halves are added): a relative
    # 1e-7 or so a sum, which two short epochs carry forward. 1e-6 leaves room for that; a
    # wrong split (each process stepping on the whole batch, or on its half alone) moves
    # these by as much as an epoch of training does.
    run_one, run_two = tmp_path / "one", tmp_path / "shared" / "two"
    history_one, history_two = _history(run_one), _history(run_two)
    assert len(history_two["loss"]) == 2
    for key, values in history_two.items():
        np.testing.assert_allclose(values, history_one[key], rtol=1e-6, err_msg=key)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (run_one, run_two)]
    for key in ("validation_accuracy", "validation_loss", "test_accuracy", "test_loss"):
        assert metrics[1][key] == pytest.approx(metrics[0][key], rel=1e-6), key
    assert _files(run_two) == _files(run_one)


@pytest.mark.parametrize(
    "environment, message",
    [
        ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": ""}, "but KERAS_DISTRIBUTION_JOB_ADDRESSES is not"),
        ({"KERAS_DISTRIBUTION_PROCESS_ID": "2"}, "KERAS_DISTRIBUTION_PROCESS_ID=2 must be"),
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "two"}, "must be whole numbers"),
        ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1,b:2,c:3"}, "names 3 processes but"),
    ],
)
def test_launch_settings_refused_with_a_clear_error(monkeypatch, environment, message):
    settings = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": "localhost:1234",
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
        "KERAS_DISTRIBUTION_PROCESS_ID": "0",
    }
    for name, value in {**settings, **environment}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=message):
        distribute.start_processes(Config(distribute="data"))


def test_several_processes_need_distribute_data(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "localhost:1234")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    with pytest.raises(UserError, match="it needs --distribute data"):
        distribute.start_processes(Config())


def test_no_settings_no_processes(monkeypatch):
    for name in (distribute.ADDRESSES, distribute.COUNT, distribute.INDEX):
        monkeypatch.delenv(name, raising=False)
    distribute.start_processes(Config(distribute="data"))  # nothing to join: returns
    assert distribute.processes.process_count() == 1
