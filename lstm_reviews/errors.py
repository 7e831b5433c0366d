"""How every command fails: one user-error class, one mapping to exit codes.

    UserError   a mistake the user can fix (a missing path, a bad option, a run directory
                from another version). Its message names the file or option and what was
                expected. Every command prints it as "error: <message>" and exits 2.
    Ctrl-C      exit 130, with a message that says what was kept at that moment.
    anything    else is a bug: Python's traceback, exit 1.

`run_command` is the one place that does this mapping; each CLI's `main` calls it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


class UserError(Exception):
    """A problem with the user's input, files or settings; the message says what to fix."""


def run_command(
    body: Callable[[], int | None], on_interrupt: Callable[[], str] = lambda: "interrupted"
) -> int:
    """Runs a CLI's body and maps its outcome to an exit code.

    body: returns an exit code (None means 0). on_interrupt: the message for Ctrl-C, asked
    for at that moment, so it can say what is on disk then.
    """
    try:
        code = body()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"\n{on_interrupt()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if code is None else code
