"""The shape the code keeps: short functions and small classes in the packages."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("worker", "trainer", "schemas", "posters", "common")
MAX_FUNCTION_LINES = 50
MAX_CLASS_LINES = 200


def _definitions() -> list[tuple[str, ast.AST]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text("utf-8"), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node))
    return found


def _length(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1  # type: ignore[attr-defined, operator]


def test_functions_and_classes_stay_small() -> None:
    too_long = [
        f"{where} ({_length(node)} lines)"
        for where, node in _definitions()
        if _length(node)
        > (MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES)
    ]
    assert not too_long, "over the size limits: " + "; ".join(too_long)
