"""The package's import graph: no cycle, and nothing in a sub-package imports the commands or
the API above it. Every import counts, those inside functions and the deferred ones too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lstm_reviews"
# The top of the house: what a user runs or imports first. Nothing below may import them.
ABOVE = {"api", "commands", "explain", "export", "gpu_bundle", "notebook", "predict", "score"}
ABOVE |= {"train"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports: import statements anywhere in the file
    (`from lstm_reviews.x import y` counts y when y is a module) and deferred_import("...")."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "deferred_import"
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    return {name for name in names if name in known and name != "lstm_reviews"}


def graph() -> dict[str, set[str]]:
    found = modules()
    # The package's own __init__ names the API lazily; its strings are not imports.
    return {
        name: imported(path, set(found)) for name, path in found.items() if name != "lstm_reviews"
    }


def test_the_graph_is_read_from_the_code():
    edges = graph()
    assert "lstm_reviews.training.run" in edges["lstm_reviews.api"]
    assert "lstm_reviews.model.cell" in edges["lstm_reviews.model.variants"]
    assert "lstm_reviews.data.text" in edges["lstm_reviews.data.tokens"]  # a deferred import


def test_no_import_cycle():
    edges = graph()
    done, path = set(), []

    def visit(name):
        if name in path:
            cycle = path[path.index(name) :] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        path.append(name)
        for target in sorted(edges.get(name, ())):
            visit(target)
        path.pop()
        done.add(name)

    for name in sorted(edges):
        visit(name)


def test_nothing_below_imports_the_commands_or_the_api():
    above = {f"lstm_reviews.{name}" for name in ABOVE}
    upward = [
        f"{name} -> {target}"
        for name, targets in graph().items()
        if name not in above
        for target in targets & above
    ]
    assert upward == []
