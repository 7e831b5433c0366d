"""Runs the tests marked `jax_rerun` again under each Keras backend this process is not using.

The backend is fixed when Keras is first imported, so the other backend needs a fresh
interpreter: `python -m pytest` alone thereby covers TensorFlow and JAX. The tests carry the
marker themselves (all of tests/test_cell.py and tests/test_variants.py; of
tests/test_adversarial.py the training steps; of tests/test_recipe.py the averaged weights,
the layer-wise rates, the default recipe resumed, whole reviews in batches and the gpu
preset), so a renamed test stays selected and a new one joins by its decorator.
"""

from __future__ import annotations

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
SUPPORTED = ("tensorflow", "jax")
OTHER_BACKENDS = [backend for backend in SUPPORTED if backend != keras.backend.backend()]


def _pytest(*args: str, env: dict, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _marked_tests(env: dict) -> set[str]:
    """The ids of every jax_rerun test, as pytest collects them (file::name[params])."""
    files = [str(TESTS / name) for name in RERUN_FILES]
    result = _pytest("--collect-only", "-q", "-m", "jax_rerun", *files, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return {line.removeprefix("tests/") for line in result.stdout.splitlines() if "::" in line}


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_marked_tests_pass_under_the_other_backend(backend, tmp_path):
    report = tmp_path / "report.xml"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    files = [str(TESTS / name) for name in RERUN_FILES]
    result = _pytest(
        "-q",
        "-W",
        "ignore::DeprecationWarning",
        "-m",
        "jax_rerun",
        f"--junitxml={report}",
        *files,
        env=env,
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
    marked = _marked_tests(env)
    assert len(marked) >= 60, sorted(marked)  # the marker was found on the files above
    assert ran == marked, sorted(ran ^ marked)
    # Each subprocess file really ran on `backend`: its test asserts keras.backend.backend().
    for name in RERUN_FILES:
        assert f"{name}::test_runs_on_the_requested_backend" in ran, name


def test_this_process_runs_a_supported_backend():
    """Otherwise the marked tests would silently cover one backend fewer than claimed."""
    assert keras.backend.backend() in SUPPORTED
    assert len(OTHER_BACKENDS) == 1


def test_the_marked_tests_lie_in_the_files_rerun():
    """A jax_rerun marker in a file not listed above would be silently left out."""
    marked_files = {
        path.name
        for path in TESTS.glob("test_*.py")
        if path.name != Path(__file__).name and "pytest.mark.jax_rerun" in path.read_text()
    }
    assert marked_files == set(RERUN_FILES)
