"""--distribute data: DataParallel over two CPU devices under JAX, in fresh interpreters (the
backend and the device count are fixed when JAX starts)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_argv

ROOT = Path(__file__).resolve().parents[1]
TWO_CPUS = "--xla_force_host_platform_device_count=2"


def _python(
    args: list[str], backend: str = "jax", devices: int = 2, env_extra: dict | None = None, **kwargs
):
    env = {
        **os.environ,
        **(env_extra or {}),
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": TWO_CPUS if devices == 2 else "",
    }
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=900, **kwargs
    )


PLACEMENT = """
import json, keras, numpy as np
from keras.src.backend.jax.distribution_lib import distribute_data_input
from lstm_reviews.config import Config
from lstm_reviews.training.distribute import set_up_distribution
from lstm_reviews.model.classifier import build_model
config = Config(distribute="data", vocab_size=50, embedding_dim=8, units=4, batch_size=8)
distribution = set_up_distribution(config)
model = build_model(config, 50)
layout = distribution.get_data_layout((8, 40))
batch = distribute_data_input(np.zeros((8, 40), np.int32), layout, distribution.batch_dim_name)
print(json.dumps({
    "devices": int(distribution.device_mesh.devices.size),
    "replicated": [bool(v.value.sharding.is_fully_replicated) for v in model.variables],
    "variable_devices": sorted({len(v.value.sharding.device_set) for v in model.variables}),
    "batch_shards": sorted(s.data.shape[0] for s in batch.addressable_shards),
}))
"""


@pytest.mark.slow
def test_weights_replicated_and_batches_split():
    done = _python(["-c", PLACEMENT])
    assert done.returncode == 0, done.stderr[-3000:]
    placed = json.loads(done.stdout.strip().splitlines()[-1])
    assert placed["devices"] == 2
    assert placed["replicated"] and all(placed["replicated"])  # a full copy on each device
    assert placed["variable_devices"] == [2]
    assert placed["batch_shards"] == [4, 4]  # 8 rows: 4 on each device


REFUSED = """
import sys
from lstm_reviews.config import Config
from lstm_reviews.training.distribute import set_up_distribution
from lstm_reviews.errors import UserError
try:
    set_up_distribution(Config(distribute="data", **{settings}))
except UserError as error:
    print("REFUSED", error)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, devices, settings, message",
    [
        ("tensorflow", 2, {}, "needs the JAX backend, but Keras runs on 'tensorflow'"),
        ("jax", 1, {}, "needs several devices, but JAX sees one"),
        ("jax", 2, {"batch_size": 7}, "splits each batch over 2 devices, but --batch-size is 7"),
        ("jax", 2, {"eval_batch_size": 5}, "splits each batch over 2 devices, but --eval-batch"),
        ("jax", 2, {"batch_shapes": "dynamic"}, "needs batches of one size"),
    ],
)
def test_refused_with_a_clear_error(backend, devices, settings, message):
    done = _python(["-c", REFUSED.format(settings=settings)], backend=backend, devices=devices)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"REFUSED --distribute data {message}" in done.stdout.replace("\n", " ")


@pytest.mark.slow
def test_cli_error_exit_2(tiny_imdb, tmp_path):
    done = _python(
        ["-m", "lstm_reviews.train", *tiny_argv(tiny_imdb, tmp_path, "--distribute", "data")],
        devices=1,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: --distribute data needs")


def _history(run_dir: Path) -> dict[str, np.ndarray]:
    with (run_dir / "history.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([float(row[key]) for row in rows]) for key in ("loss", "val_loss")}


@pytest.mark.slow
def test_same_losses_as_one_device_and_after_a_kill(tiny_imdb, tmp_path):
    """The same tiny run on one device, and on two killed once epoch 1 is committed then
    resumed (epoch 1's backup loaded into the distributed model). Epoch 1's row was trained
    on two devices before the kill, epoch 2's after the resume: equal rows to the one-device
    run's prove both the split and the resume (an uninterrupted two-device run would add a
    process and no property)."""
    runs = {}
    # One length bucket: each batch shape is an XLA compilation per process, and the split
    # of the batch rows does not depend on the reviews' length.
    argv = ["--epochs", "2", "--lm-epochs", "0", "--no-bucket-by-length"]
    for run, mode in (("run-off", "off"), ("killed", "data")):
        runs[run] = tiny_argv(tiny_imdb, tmp_path, *argv, "--distribute", mode, run=run)
        crash = {"LSTM_REVIEWS_CRASH_AT": "after-commit"} if run == "killed" else {}
        done = _python(["-m", "lstm_reviews.train", *runs[run]], env_extra=crash)
        assert done.returncode == (-9 if crash else 0), done.stderr[-3000:]
        if mode == "data":
            assert "Data parallel over 2 devices" in done.stdout
    state = json.loads((tmp_path / "killed" / "state.json").read_text())
    assert state["epochs_done"] == 1 and not state["fit_done"]
    resumed = _python(["-m", "lstm_reviews.train", *runs["killed"], "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Data parallel over 2 devices" in resumed.stdout
    histories = {run: _history(tmp_path / run) for run in runs}
    # The same step on each side; only the order of float32 sums differs (each device sums
    # its half of the batch, then the halves are added): a relative 1e-7 or so per sum,
    # which two short epochs carry forward. 1e-6 leaves room for that; a wrong split (each
    # device stepping on its half alone, or on the whole batch twice) or a resume that lost
    # or repeated a step moves these losses by far more, as much as one epoch moves them.
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(histories["killed"][key], histories["run-off"][key], rtol=1e-6)
    assert len(histories["run-off"]["loss"]) == 2
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in runs]
    assert metrics[1]["test_accuracy"] == pytest.approx(metrics[0]["test_accuracy"], abs=1e-6)
