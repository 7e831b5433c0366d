"""errors.run_command: how every command's outcome becomes an exit code and one line."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from lstm_reviews.data import cache
from lstm_reviews.data.cache import write_atomically
from lstm_reviews.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USER_ERROR,
    UserError,
    run_command,
    tensorflow_os_error,
)


def _raise(error):
    def body():
        raise error

    return body


def test_each_outcome_gets_its_exit_code_and_one_line(capsys):
    assert run_command(lambda: None) == EXIT_OK
    assert run_command(lambda: 1) == 1
    assert run_command(_raise(UserError("--file x: expected text"))) == EXIT_USER_ERROR
    assert capsys.readouterr().err == "error: --file x: expected text\n"
    assert run_command(_raise(KeyboardInterrupt), on_interrupt=lambda: "kept: a.json") == (
        EXIT_INTERRUPTED
    )
    assert capsys.readouterr().err == "\nkept: a.json\n"


def test_a_full_disk_names_the_file_and_exits_1(capsys, tmp_path):
    path = tmp_path / "metrics.json"
    full = OSError(errno.ENOSPC, "No space left on device", str(path))
    assert run_command(_raise(full)) == EXIT_FAILED
    assert capsys.readouterr().err == f"error: cannot write to {path}: No space left on device\n"


def test_other_os_errors_keep_their_traceback():
    with pytest.raises(PermissionError):
        run_command(_raise(PermissionError(errno.EACCES, "Permission denied", "x")))


def test_closed_standard_output_exits_2(monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(sys, "stdout", None)  # what Python makes of a closed descriptor 1
    assert run_command(lambda: ran.append(True)) == EXIT_USER_ERROR
    assert not ran  # refused before the work
    assert capsys.readouterr().err.startswith("error: standard output is closed")


@pytest.mark.parametrize(
    "number, code",
    [
        (errno.ENOSPC, EXIT_FAILED),  # the machine's fault
        (errno.EROFS, EXIT_FAILED),
        (errno.EDQUOT, EXIT_FAILED),
        (errno.EACCES, EXIT_USER_ERROR),  # a place the user can change
        (errno.EPERM, EXIT_USER_ERROR),
    ],
)
def test_a_failed_write_in_an_output_is_one_line_naming_its_option(capsys, tmp_path, number, code):
    path = tmp_path / "run" / "backup" / "epoch-1.npz"
    failed = OSError(number, os.strerror(number), str(path))
    outputs = {"--cache-dir": tmp_path / "cache", "--output-dir": tmp_path / "run"}
    assert run_command(_raise(failed), outputs=outputs) == code
    assert capsys.readouterr().err == (
        f"error: cannot write to {path}: {os.strerror(number)} (--output-dir)\n"
    )


def test_a_file_where_a_folder_should_be_is_named(capsys, tmp_path):
    in_the_way = tmp_path / "cache"
    in_the_way.write_text("a file")
    target = in_the_way / "tokens-0123456789ab.npz"
    failed = NotADirectoryError(errno.ENOTDIR, "Not a directory", str(target))
    assert run_command(_raise(failed), outputs={"--cache-dir": in_the_way}) == EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        f"error: cannot write to {target}: {in_the_way} is a file, not a folder (--cache-dir)\n"
    )
    failed = FileExistsError(errno.EEXIST, "File exists", str(in_the_way))
    assert run_command(_raise(failed), outputs={"BUNDLE_DIR": in_the_way}) == EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        f"error: cannot write to {in_the_way}: it is a file, not a folder (BUNDLE_DIR)\n"
    )


def test_the_innermost_output_names_the_option(capsys, tmp_path):
    path = tmp_path / "run" / "cache" / "x.npz"
    failed = OSError(errno.EROFS, "Read-only file system", str(path))

    def outputs():  # asked for only when a write failed
        return {"--output-dir": tmp_path / "run", "--cache-dir": tmp_path / "run" / "cache"}

    assert run_command(_raise(failed), outputs=outputs) == EXIT_FAILED
    assert capsys.readouterr().err.endswith("(--cache-dir)\n")


def test_a_tensorflow_write_error_is_an_os_error_naming_the_path(capsys, tmp_path):
    tf = pytest.importorskip("tensorflow")
    out = tmp_path / "models"
    full = tf.errors.ResourceExhaustedError(
        None, None, f"{out}/.export-1-ab/variables/variables.data; No space left on device"
    )
    assert run_command(_raise(full), outputs={"--out": out}) == EXIT_FAILED
    assert capsys.readouterr().err == (
        f"error: cannot write to {out}: No space left on device (--out)\n"
    )
    # No errno quoted: the class says which.
    error = tensorflow_os_error(tf.errors.PermissionDeniedError(None, None, "denied"), out)
    assert error.errno == errno.EACCES and error.filename == str(out)
    # A TensorFlow error about no output (a graph's bug, memory) keeps its traceback.
    with pytest.raises(tf.errors.ResourceExhaustedError):
        run_command(
            _raise(tf.errors.ResourceExhaustedError(None, None, "OOM")), outputs={"--out": out}
        )


def test_an_atomic_write_names_its_file(capsys, tmp_path):
    """A write on an open file names no file: the atomic writer names its target."""
    target = tmp_path / "cache" / "vectors-0123456789ab.npy"

    def disk_full(file):
        file.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    def body():
        write_atomically(target, disk_full)

    assert run_command(body, outputs={"--cache-dir": tmp_path / "cache"}) == EXIT_FAILED
    assert capsys.readouterr().err == (
        f"error: cannot write to {target}: No space left on device (--cache-dir)\n"
    )
    assert list(target.parent.iterdir()) == []  # its temporary went with it


def _dead_pid() -> int:
    """A process id that no process has: a child's, after it was reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.slow
def test_temporaries_of_killed_cache_writers_are_removed(tmp_path):
    host = cache._host_hash()
    dead = tmp_path / f".tokens-0123456789ab.npz.{_dead_pid()}-{host}.k2j4_x9a"
    live = tmp_path / f".tokens-0123456789ab.npz.{os.getpid()}-{host}.a1b2c3d4"
    other_host = tmp_path / f".tokens-0123456789ab.npz.{_dead_pid()}-00000000.a1b2c3d4"
    for path in (dead, live, other_host):
        path.write_bytes(b"half a cache file")
    built = []
    value = cache.cached(
        tmp_path / "tokens-0123456789ab.npz",
        build=lambda: built.append(True) or b"ids",
        save=lambda path, value: cache.write_atomically(path, lambda file: file.write(value)),
        load=lambda path: path.read_bytes(),
    )
    assert value == b"ids" and built
    assert not dead.exists()  # its writer is gone
    assert live.exists() and other_host.exists()  # a live writer's; another machine's
    # Temporaries are named so: a kill while writing leaves one the next lookup recognizes.
    seen = []
    cache.write_atomically(
        tmp_path / "x.json", lambda file: seen.extend(tmp_path.glob(".x.json.*"))
    )
    assert [cache._TEMPORARY.fullmatch(path.name)["pid"] for path in seen] == [str(os.getpid())]


# ---------------------------------------------------------------- what one backend alone does


@pytest.mark.torch_rerun
def test_runs_on_the_requested_backend():
    """tests/test_backends.py reruns part of this module with KERAS_BACKEND set."""
    import keras

    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", keras.backend.backend())


@pytest.mark.torch_rerun
def test_what_another_backend_cannot_do_is_one_line_naming_the_backend_in_use(capsys):
    """The SavedModel export needs TensorFlow, --distribute data JAX: under any other
    backend (PyTorch in tests/test_backends.py) each is refused in one line, exit 2."""
    import keras

    from lstm_reviews.config import Config
    from lstm_reviews.serving.savedmodel import require_tensorflow_backend
    from lstm_reviews.training.distribute import set_up_distribution

    backend = keras.backend.backend()
    if backend == "tensorflow":
        assert run_command(require_tensorflow_backend) == EXIT_OK
    else:
        assert run_command(require_tensorflow_backend) == EXIT_USER_ERROR
        assert capsys.readouterr().err == (
            "error: exporting a SavedModel needs the TensorFlow backend, but Keras runs on "
            f"{backend!r}: run with KERAS_BACKEND=tensorflow\n"
        )
    if backend != "jax":
        assert run_command(lambda: set_up_distribution(Config(distribute="data"))) == 2
        assert capsys.readouterr().err == (
            f"error: --distribute data needs the JAX backend, but Keras runs on {backend!r}: "
            "run with KERAS_BACKEND=jax\n"
        )
