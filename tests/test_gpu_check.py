"""benchmarks/gpu_check.py, the device check, at tiny scale on the CPU: the same script a GPU
session runs, so its first run there is not its first run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_reviews import gpu_bundle

REPO = Path(__file__).resolve().parents[1]
# One length bucket: under JAX each batch shape is an XLA compilation (bucketed training under
# JAX from a bundle: tests/test_gpu_bundle.py); train.sh carries the option to the recipe.
TINY_GPU_PRESET = [
    *("--preset", "gpu", "--vocab-size", "50", "--max-length", "40", "--no-bucket-by-length"),
    *("--embedding-dim", "8", "--units", "4", "--batch-size", "8", "--lm-batch-size", "8"),
    *("--lm-negatives", "8", "--mixed-precision", "off"),
]


def _check(bundle: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), str(bundle), str(out), *extra],
        capture_output=True,
        text=True,
        env=environment,
        timeout=900,
    )


@pytest.mark.slow
def test_every_figure_in_one_json_from_a_bundle(tiny_imdb, tmp_path):
    bundle = tmp_path / "bundle"
    assert gpu_bundle.main([*TINY_GPU_PRESET, "--data", str(tiny_imdb), str(bundle)]) == 0
    done = _check(bundle, tmp_path / "out", "--scale", "tiny", "--budget-s", "600")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    cell = figures["steps"]["cell_jax"]
    assert cell["exit_status"] == 0 and not cell["stopped_by_budget"]
    assert cell["max_abs_prediction_difference"] < 1e-5  # our cell equals keras.layers.LSTM
    assert cell["tokens_per_second"]["ours"]["train"] > 0
    assert cell["tokens_per_second"]["keras"]["infer"] > 0
    # torch is in the dev requirements, so the torch step runs here too, as on the GPU.
    torch_cell = figures["steps"]["cell_torch"]
    assert torch_cell["exit_status"] == 0 and not torch_cell["stopped_by_budget"]
    assert torch_cell["max_abs_prediction_difference"] < 1e-5
    recipe = figures["steps"]["recipe"]
    assert recipe["exit_status"] == 0, (tmp_path / "out" / "recipe.log").read_text()[-3000:]
    assert recipe["metrics"]["backend"] == "jax"
    # Every stage ran: one epoch of 4 units learns little, so its speed, not its accuracy.
    assert recipe["metrics"]["tokens_per_second"] > 0 and recipe["metrics"]["epochs"] == 1
    assert {"validation_accuracy", "test_accuracy"} <= set(recipe["metrics"])
    assert recipe["resumable"] is False  # finished: evaluated, nothing left to resume


def test_a_folder_without_train_sh_is_refused_in_one_line(tmp_path):
    done = _check(tmp_path, tmp_path / "out")
    assert done.returncode == 2
    assert (
        done.stdout.strip()
        == f"error: {tmp_path} has no train.sh: make it with lstm_reviews.gpu_bundle"
    )
