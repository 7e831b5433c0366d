"""How every command fails: one user-error class, one mapping to exit codes.

    UserError   a mistake the user can fix (a missing path, a bad option, a run directory
                from another version). Its message names the file or option and what was
                expected. Every command prints it as "error: <message>" and exits 2.
    Ctrl-C      exit 130, with a message that says what was kept at that moment.
    write       a write failed: "error: cannot write to <path>: <why> (<option>)", naming
                the option that chose the place where it is known. Exit 1 for the
                machine's fault (disk full, quota, read-only file system, I/O error;
                standard output on /dev/full included), 2 for a place the user can change
                (a file where a folder should be, no permission). An OSError counts as a
                write failure if the machine is at fault or if it names a path under one of
                the command's outputs; TensorFlow's errors too, if they name such a path.
    closed      standard output closed (`>&-`): "error: standard output is closed", exit 2.
    anything    else is a bug: Python's traceback, exit 1.

`run_command` is the one place that does this mapping; each CLI's `main` calls it.
Training loops hold Ctrl-C until the batch ends (`batch_end_interrupts`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
# The machine's fault, not the user's: disk full, quota exceeded, a read-only file system,
# a failing device, a file past the system's size limit.
MACHINE_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG)
# TensorFlow's error classes for a failed file operation whose message names no errno.
_TENSORFLOW_ERRNO = {
    "ResourceExhaustedError": errno.ENOSPC,
    "PermissionDeniedError": errno.EACCES,
    "NotFoundError": errno.ENOENT,
    "AlreadyExistsError": errno.EEXIST,
}

# A command's outputs: option (e.g. "--output-dir") -> the path it chose (None: not used).
Outputs = Mapping[str, object]


class UserError(Exception):
    """A problem with the user's input, files or settings; the message says what to fix."""


def run_command(
    body: Callable[[], int | None],
    on_interrupt: Callable[[], str] = lambda: "interrupted",
    outputs: Outputs | Callable[[], Outputs] | None = None,
) -> int:
    """Runs a CLI's body and maps its outcome to an exit code.

    body: returns an exit code (None means 0). on_interrupt: the message for Ctrl-C, asked
    for at that moment, so it can say what is on disk then. outputs: where the command
    writes, by the option that chose each place (or a function that says, asked only when a
    write fails): a failed write there is named with its option.
    """
    if sys.stdout is None:  # Python's stand-in for a closed file descriptor 1
        print(
            "error: standard output is closed; expected it open (redirect it to a file, "
            "or to /dev/null to discard it)",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    try:
        code = body()
        sys.stdout.flush()  # a full disk shows here, not as Python's complaint at exit
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"\n{on_interrupt()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        failure = write_failure(error, outputs)
        if failure is None:
            raise  # anything else is a bug: keep its traceback
        message, code = failure
        print(f"error: {message}", file=sys.stderr)
        return code
    return EXIT_OK if code is None else code


def write_failure(
    error: Exception, outputs: Outputs | Callable[[], Outputs] | None = None
) -> tuple[str, int] | None:
    """(message, exit code) if `error` is a failed write (see the module's docstring), else
    None. Worked example: OSError(ENOSPC, "No space left on device", "runs/a/state.json")
    with outputs {"--output-dir": "runs/a"} -> ("cannot write to runs/a/state.json: No
    space left on device (--output-dir)", 1)."""
    if callable(outputs):
        try:
            outputs = outputs()
        except Exception:  # a place that cannot be worked out is named without its option
            outputs = {}
    outputs = {option: path for option, path in (outputs or {}).items() if path is not None}
    if not isinstance(error, OSError):
        error = _tensorflow_write_error(error, outputs)
        if error is None:
            return None
    path = os.fsdecode(error.filename) if isinstance(error.filename, (str, bytes)) else None
    option = _option_of(path, outputs) if path else None
    if error.errno not in MACHINE_FAULTS and option is None:
        return None
    if path:
        where = path
    elif _stdout_broken():
        where = "standard output"
    else:
        where = "a file"  # a write on an open file object does not name it
    reason = (path and _not_a_folder(path, error.errno)) or error.strerror or str(error)
    message = f"cannot write to {where}: {reason}" + (f" ({option})" if option else "")
    return message, EXIT_FAILED if error.errno in MACHINE_FAULTS else EXIT_USER_ERROR


def _option_of(path: str, outputs: Outputs) -> str | None:
    """The option whose place holds `path` (the innermost, if places nest), or None."""
    target = os.path.abspath(path)
    found, found_place = None, ""
    for option, place in outputs.items():
        place = os.path.abspath(os.fspath(place))
        inside = target == place or target.startswith(place.rstrip(os.sep) + os.sep)
        if inside and len(place) > len(found_place):
            found, found_place = option, place
    return found


def _not_a_folder(path: str, number: int | None) -> str | None:
    """For "Not a directory" or "File exists": which part of `path` is in a folder's way."""
    if number not in (errno.ENOTDIR, errno.EEXIST):
        return None
    for part in (Path(path), *Path(path).parents):
        if part.is_dir():
            return None  # everything above is a folder too
        if os.path.lexists(part):
            name = "it" if str(part) == path else str(part)
            return f"{name} is {'a file, ' if part.is_file() else ''}not a folder"
    return None


def _tensorflow_write_error(error: Exception, outputs: Outputs) -> OSError | None:
    """A TensorFlow error whose message names one of the outputs, as an OSError; else None."""
    tensorflow = sys.modules.get("tensorflow")  # not imported here: only if the body did
    op_error = getattr(getattr(tensorflow, "errors", None), "OpError", None)
    if op_error is None or not isinstance(error, op_error):
        return None
    message = getattr(error, "message", str(error))
    for place in outputs.values():
        place = os.fspath(place)
        if place in message or os.path.abspath(place) in message:
            return tensorflow_os_error(error, place)
    return None


def tensorflow_os_error(error: Exception, path) -> OSError:
    """TensorFlow's error for a file operation on `path` as the OSError Python would raise:
    the errno whose text TensorFlow quotes (it appends strerror), else its class's."""
    message = getattr(error, "message", str(error))
    quoted = [number for number in errno.errorcode if os.strerror(number) in message]
    if quoted:
        number = max(quoted, key=lambda number: len(os.strerror(number)))
    else:
        number = _TENSORFLOW_ERRNO.get(type(error).__name__, errno.EIO)
    return OSError(number, os.strerror(number), os.fspath(path))


def naming_the_path(write: Callable) -> Callable:
    """Decorates write(path, ...) so that an OSError it raises names `path`: a write on an
    open file, or on a temporary beside it, names no file the user knows."""

    @functools.wraps(write)
    def wrapper(path, *args, **kwargs):
        try:
            return write(path, *args, **kwargs)
        except OSError as error:
            raise OSError(error.errno, error.strerror or str(error), os.fspath(path)) from error

    return wrapper


def _stdout_broken() -> bool:
    """Whether standard output fails: text it cannot flush, or even an empty write refused
    (/dev/full). If so it is pointed at /dev/null, or Python's flush at exit fails again."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):  # no descriptor (a test's StringIO): not what failed
        return False
    try:
        sys.stdout.flush()
        os.write(descriptor, b"")
        return False
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), descriptor)
        return True


class _PendingInterrupt:
    """Ctrl-C as a request, taken up where the loop checks for it (`check`)."""

    def __init__(self, previous):
        self.previous = previous  # the handler before: a second Ctrl-C goes to it at once
        self.requested = False

    def handle(self, signum, frame):
        if self.requested:
            if callable(self.previous):
                self.previous(signum, frame)
            raise KeyboardInterrupt
        self.requested = True
        # os.write, not print: the handler may run inside a print to standard error.
        os.write(2, b"\nCtrl-C: stopping after this step (again to stop at once)\n")

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


_pending: list[_PendingInterrupt] = []  # the innermost batch_end_interrupts, if any


@contextlib.contextmanager
def batch_end_interrupts():
    """Within, Ctrl-C (SIGINT) only asks the loop to stop: `check_interrupt()`, called after
    each batch, raises KeyboardInterrupt then, where the run's state is whole. Python raises
    it wherever its handler happens to run, and there it can be lost: inside a __del__ or a
    callback of TensorFlow's it is printed as ignored, and the run went on. A second Ctrl-C
    interrupts at once. Only the main thread receives signals; elsewhere, or where SIGINT is
    ignored (a background job), nothing changes. Nested: the outer one serves."""
    previous = signal.getsignal(signal.SIGINT)
    if (
        _pending
        or threading.current_thread() is not threading.main_thread()
        or previous in (signal.SIG_IGN, None)
    ):
        yield
        return
    pending = _PendingInterrupt(previous)
    signal.signal(signal.SIGINT, pending.handle)
    _pending.append(pending)
    try:
        yield
    finally:
        _pending.remove(pending)
        signal.signal(signal.SIGINT, previous)
    pending.check()  # asked for after the last check (the loop's end): still an interrupt


def check_interrupt() -> None:
    """Raises KeyboardInterrupt if Ctrl-C came within batch_end_interrupts."""
    if _pending:
        _pending[-1].check()
