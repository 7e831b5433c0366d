"""errors.run_command: how every command's outcome becomes an exit code and one line."""

from __future__ import annotations

import errno
import sys

import pytest

from lstm_reviews.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USER_ERROR,
    UserError,
    run_command,
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
