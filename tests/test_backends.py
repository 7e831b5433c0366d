"""Runs marked tests again under the Keras backends this process is not using.

The backend is fixed when Keras is first imported, so another backend needs a fresh
interpreter, one per backend: `python -m pytest` alone thereby covers TensorFlow, JAX and
PyTorch. The tests carry the markers themselves, so a renamed test stays selected and a new
one joins by its decorator:

    jax_rerun     all of tests/test_cell.py and tests/test_variants.py; of
                  tests/test_adversarial.py the training steps; of tests/test_recipe.py the
                  averaged weights, the layer-wise rates, the default recipe resumed, whole
                  reviews in batches and the gpu preset
    torch_rerun   a small set, as PyTorch on a CPU runs Keras' RNN loop eagerly, step by step:
                  the cells' masked parity with keras.layers.LSTM and GRU and their
                  gradients (float32), the variants against NumPy, the ledger's sums, the
                  adversarial training steps, one training killed and resumed
                  (tests/test_crash_safety.py), and what PyTorch cannot do, refused
                  (tests/test_errors.py)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import keras
import pytest

TESTS = Path(__file__).resolve().parent
# Each file that holds marked tests; each of them has test_runs_on_the_requested_backend.
RERUN_FILES = ["test_cell.py", "test_variants.py", "test_adversarial.py", "test_recipe.py"]
TORCH_RERUN_FILES = [
    "test_cell.py",
    "test_variants.py",
    "test_ledger.py",
    "test_adversarial.py",
    "test_crash_safety.py",
    "test_errors.py",
]
SUPPORTED = ("tensorflow", "jax")
OTHER_BACKENDS = [backend for backend in SUPPORTED if backend != keras.backend.backend()]

# The subprocess: pytest, with a plugin that writes the ids of the tests it selected (those
# marked) before it runs them, so that one interpreter both collects and runs.
RERUN = """
import json, sys, pytest
class WriteSelected:
    def pytest_collection_finish(self, session):
        with open(sys.argv[1], "w") as file:
            json.dump([item.nodeid for item in session.items], file)
sys.exit(pytest.main(sys.argv[2:], plugins=[WriteSelected()]))
"""


def rerun(backend: str, marker: str, files: list[str], tmp_path: Path, **env) -> set[str]:
    """Runs the tests of `files` marked `marker` under `backend` in one subprocess; asserts
    that they all passed, none skipped, and that every one selected ran. Returns their ids
    (file::name[params])."""
    report, selected_file = tmp_path / "report.xml", tmp_path / "selected.json"
    result = subprocess.run(
        [sys.executable, "-c", RERUN, str(selected_file), "-p", "no:cacheprovider", "-q"]
        + ["-W", "ignore::DeprecationWarning", "-m", marker, f"--junitxml={report}"]
        + [str(TESTS / name) for name in files],
        cwd=TESTS.parent,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"failed under {backend}:\n{output[-4000:]}"

    suite = ElementTree.parse(report).getroot().find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["failures"] == counts["errors"] == 0, counts
    assert counts["skipped"] == 0, counts  # nothing may hide behind a skip
    ran = {
        f"{case.get('classname').split('.')[-1]}.py::{case.get('name')}"
        for case in suite.iter("testcase")
    }
    selected = {node.removeprefix("tests/") for node in json.loads(selected_file.read_text())}
    assert ran == selected, sorted(ran ^ selected)
    # Each file really ran on `backend`: its test asserts keras.backend.backend().
    for name in files:
        assert f"{name}::test_runs_on_the_requested_backend" in ran, name
    return ran


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_marked_tests_pass_under_the_other_backend(backend, tmp_path):
    ran = rerun(backend, "jax_rerun", RERUN_FILES, tmp_path)
    assert len(ran) >= 60, sorted(ran)  # the marker was found on the files above


@pytest.mark.slow
def test_torch_marked_tests_pass_under_pytorch(tmp_path):
    assert importlib.util.find_spec("torch"), (
        "torch is missing: pip install -r requirements-dev.txt"
    )
    # One thread: torch's intra-op threads only wait on each other over tensors this small.
    ran = rerun("torch", "torch_rerun", TORCH_RERUN_FILES, tmp_path, OMP_NUM_THREADS="1")
    assert len(ran) >= 25, sorted(ran)  # the marker was found on the files above
    assert (
        "test_crash_safety.py::test_the_default_recipe_killed_mid_epoch_resumes_to_the_"
        "uninterrupted_run" in ran
    )


def test_this_process_runs_a_supported_backend():
    """Otherwise the marked tests would silently cover one backend fewer than claimed."""
    assert keras.backend.backend() in SUPPORTED
    assert len(OTHER_BACKENDS) == 1


@pytest.mark.parametrize(
    "marker, files",
    [("jax_rerun", RERUN_FILES), ("torch_rerun", TORCH_RERUN_FILES)],
    ids=["jax", "torch"],
)
def test_the_marked_tests_lie_in_the_files_rerun(marker, files):
    """A marker in a file not listed above would be silently left out (helpers'
    FLOAT32_UNDER_TORCH marks torch_rerun too)."""
    spellings = [f"pytest.mark.{marker}"] + ["FLOAT32_UNDER_TORCH"] * (marker == "torch_rerun")
    marked_files = {
        path.name
        for path in TESTS.glob("test_*.py")
        if path.name != Path(__file__).name
        and any(spelling in path.read_text() for spelling in spellings)
    }
    assert marked_files == set(files)
