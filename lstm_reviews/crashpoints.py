"""A test hook: kill this process at a named point, to prove a run survives a crash there.

    LSTM_REVIEWS_CRASH_AT=<point>[:<count>[:<signal>]]   e.g. backup-write, epoch-step:5,
                                                        epoch-step:3:SIGINT

`crash_point(name)` sends the process SIGKILL (or the signal named) the count-th time
(default: the first) it passes the point so named. SIGKILL cannot be caught: no `finally`,
no cleanup, no flush, as with the kernel's out-of-memory killer; SIGINT is Ctrl-C.
tests/test_crash_safety.py kills training runs this way at every moment that writes a file,
then resumes them. Unset (always, outside the tests), a call is one dictionary look-up.
"""

from __future__ import annotations

import os
import signal
import sys

ENVIRONMENT_VARIABLE = "LSTM_REVIEWS_CRASH_AT"
_passes: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Kills the process with SIGKILL here if $LSTM_REVIEWS_CRASH_AT names this point."""
    wanted = os.environ.get(ENVIRONMENT_VARIABLE)
    if not wanted:
        return
    point, count, signal_name = (wanted.split(":") + ["", ""])[:3]
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == int(count or 1):
        sys.stdout.flush()  # what was printed so far, for the test's failure message
        os.kill(os.getpid(), getattr(signal, signal_name or "SIGKILL"))
