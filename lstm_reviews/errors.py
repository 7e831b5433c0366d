"""How every command fails: one user-error class, one mapping to exit codes.

    UserError   a mistake the user can fix (a missing path, a bad option, a run directory
                from another version). Its message names the file or option and what was
                expected. Every command prints it as "error: <message>" and exits 2.
    Ctrl-C      exit 130, with a message that says what was kept at that moment.
    disk full   a write failed for lack of space (standard output on /dev/full included):
                "error: cannot write ...", exit 1. The machine's fault, not a bug or a typo.
    closed      standard output closed (`>&-`): "error: standard output is closed", exit 2.
    anything    else is a bug: Python's traceback, exit 1.

`run_command` is the one place that does this mapping; each CLI's `main` calls it.
Training loops hold Ctrl-C until the batch ends (`batch_end_interrupts`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # disk full, quota exceeded


class UserError(Exception):
    """A problem with the user's input, files or settings; the message says what to fix."""


def run_command(
    body: Callable[[], int | None], on_interrupt: Callable[[], str] = lambda: "interrupted"
) -> int:
    """Runs a CLI's body and maps its outcome to an exit code.

    body: returns an exit code (None means 0). on_interrupt: the message for Ctrl-C, asked
    for at that moment, so it can say what is on disk then.
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
    except OSError as error:
        if error.errno not in _NO_SPACE:
            raise  # anything else is a bug: keep its traceback
        if error.filename:
            where = error.filename
        elif _stdout_broken():
            where = "standard output"
        else:
            where = "a file"  # a write on an open file object does not name it
        print(f"error: cannot write to {where}: {error.strerror}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if code is None else code


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
