"""Fixtures every test module can use: a tiny aclImdb tree and its tarball, made in a tmp dir."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest
from helpers import trained_explain_model, write_run_dir, write_tiny_imdb


def pytest_collection_modifyitems(config, items):
    """Tests marked torch_only are deselected (and counted so in the summary) unless Keras
    runs on PyTorch: tests/test_backends.py's PyTorch subprocess runs them, and under the
    other backends other tests cover what they check at a fraction of the time."""
    keras = sys.modules.get("keras")  # imported by the test modules just collected
    if keras is not None and keras.backend.backend() == "torch":
        return
    deselected = [item for item in items if item.get_closest_marker("torch_only")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("torch_only")]


@pytest.fixture(autouse=True)
def float32_policy_after_each_test():
    """Training sets Keras' global dtype policy (--mixed-precision): a test that trained in
    bfloat16 must not leave the models of the tests after it in bfloat16."""
    yield
    keras = sys.modules.get("keras")  # not imported here: each test module picks its backend
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def tiny_imdb(tmp_path) -> Path:
    """Path of a tiny aclImdb directory."""
    return write_tiny_imdb(tmp_path / "data")


@pytest.fixture
def tiny_imdb_tarball(tmp_path) -> Path:
    """Path of aclImdb_v1.tar.gz holding the tiny tree under aclImdb/."""
    top = write_tiny_imdb(tmp_path / "src")
    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname="aclImdb")
    return archive


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run_dir, model_dir, version_dir): helpers.write_run_dir's run, exported once for the
    whole session (export, predict, score and the serving contract read it; none changes it)."""
    from lstm_reviews import export

    root = tmp_path_factory.mktemp("export")
    run_dir = root / "run"
    write_run_dir(run_dir)
    model_dir = root / "saved_models" / "imdb_lstm"
    return run_dir, model_dir, export.export_saved_model(run_dir, model_dir)


@pytest.fixture(scope="session")
def inspected_model():
    """helpers.trained_explain_model(bidirectional=True): the explain and render tests read it."""
    return trained_explain_model(True)
