"""The house style: ruff's lint and formatting rules (pyproject.toml's [tool.ruff]) hold on
every file of the repository, so .ci/run checks them with the tests; and the package's modules
and functions stay small enough to read (issue #28)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lstm_reviews"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # from its first decorator (or def) line to its last, docstring included


@pytest.mark.slow
@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(command):
    # ruff comes with requirements-dev.txt; its absence is a failed set-up, not a skip.
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def function_lengths(source: str) -> dict[str, int]:
    """Every def (methods and nested ones too) -> its lines, first decorator to last line."""
    lengths = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            lengths[f"{node.name} (line {first})"] = node.end_lineno - first + 1
    return lengths


def test_function_lengths_count_decorators_docstrings_and_nested_defs():
    source = '@decorator\ndef outer():\n    """Doc."""\n\n    def inner():\n        pass\n'
    assert function_lengths(source) == {"outer (line 1)": 6, "inner (line 5)": 2}


def test_no_module_of_the_package_is_over_the_limit():
    assert len(_modules()) > 20  # the package was found
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in _modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_no_function_of_the_package_is_over_the_limit():
    too_long = {
        f"{path.relative_to(ROOT)}: {name}": lines
        for path in _modules()
        for name, lines in function_lengths(path.read_text(encoding="utf-8")).items()
        if lines > MAX_FUNCTION_LINES
    }
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"
