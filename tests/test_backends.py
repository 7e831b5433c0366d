"""Runs tests/test_cell.py, tests/test_variants.py and tests/test_adversarial.py again under
each Keras backend this process is not using.

The backend is fixed when Keras is first imported, so the other backend needs a fresh
interpreter: `python -m pytest` alone thereby covers TensorFlow and JAX.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import keras
import pytest

# Each file with the least number of tests to run from it (fewer means some were lost) and a
# pytest -k selection. Of test_adversarial.py the backend-specific part, the training step
# (the whole file takes 3.5 minutes under JAX on 2 cores; its other tests are backend-neutral
# maths or run the same step through fit; the virtual adversarial step's test computes the
# virtual perturbation under JAX too).
CELL_TESTS = {
    "test_cell.py": (40, ""),
    "test_variants.py": (40, ""),
    "test_adversarial.py": (
        9,
        "(runs_on or perturbation or step or fit_runs) and not mixed and not virtual_perturbation",
    ),
    # The averaged weights, the layer-wise rates, the default recipe resumed (adversarial),
    # whole reviews in batches and the gpu preset end to end (bfloat16, adversarial, fixed
    # shapes under JAX). Not the resumed averaging run: under JAX it adds 80 s of compilation
    # on 2 cores, and the JAX side of averaging (the swap of the weights) is the
    # averaged_weights test.
    "test_recipe.py": (
        9,
        "runs_on or averaged_weights_are or layer_lr_decay_scales or (resumed_run and default) "
        "or reads_whole or gpu_preset",
    ),
}
SUPPORTED = ("tensorflow", "jax")
OTHER_BACKENDS = [backend for backend in SUPPORTED if backend != keras.backend.backend()]


@pytest.mark.slow
@pytest.mark.parametrize("file_name", CELL_TESTS)
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_cell_tests_pass_under_the_other_backend(backend, file_name, tmp_path):
    tests = Path(__file__).with_name(file_name)
    report = tmp_path / "report.xml"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore::DeprecationWarning",
            f"--junitxml={report}",
            *(["-k", CELL_TESTS[file_name][1]] if CELL_TESTS[file_name][1] else []),
            str(tests),
        ],
        cwd=tests.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{file_name} failed under {backend}:\n{output[-4000:]}"
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) > 0, output[-2000:]

    suite = ElementTree.parse(report).getroot().find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] >= CELL_TESTS[file_name][0], counts
    assert counts["failures"] == counts["errors"] == 0, counts
    assert counts["skipped"] == 0, counts  # nothing may hide behind a skip
    # The subprocess really ran on `backend`: this test asserts keras.backend.backend().
    backend_checks = [
        case
        for case in suite.iter("testcase")
        if case.get("name") == "test_runs_on_the_requested_backend"
    ]
    assert len(backend_checks) == 1, "the backend check did not run"
    outcome = {child.tag for child in backend_checks[0]}
    assert not outcome & {"failure", "error", "skipped"}, outcome


def test_this_process_runs_a_supported_backend():
    """Otherwise the cell tests would silently cover one backend fewer than claimed."""
    assert keras.backend.backend() in SUPPORTED
    assert len(OTHER_BACKENDS) == 1
