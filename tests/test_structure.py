"""What docs/architecture.md promises about the code's shape, checked on the source: small functions, one home for
optimizer steps, one loader of shipped and cached weights, no private names across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "course_lib"
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 80


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _code_lines(node: ast.AST, lines: list[str]) -> int:
    """Lines of code in a function's body: no docstring, blank or comment-only lines."""
    body = node.body
    first = body[0]
    start = first.end_lineno + 1 if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) else first.lineno
    return sum(1 for line in lines[start - 1:node.end_lineno] if line.strip() and not line.strip().startswith("#"))


def _calls(path: Path, attribute: str) -> list[int]:
    return [n.lineno for n in ast.walk(_tree(path)) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr == attribute]


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in SOURCES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node, lines) > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({_code_lines(node, lines)} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines of code: {long}"


@pytest.mark.parametrize("attribute", ["backward", "zero_grad"])
def test_optimizer_steps_happen_in_one_module(attribute):
    found = {str(p.relative_to(PACKAGE)): _calls(p, attribute) for p in SOURCES}
    assert {p for p, lines in found.items() if lines} == {"optim.py"}, found


@pytest.mark.parametrize("reader", ["load_tensors", "load_checkpoint", "resume_run"])
def test_only_the_registry_and_the_loop_read_weights(reader):
    """Shipped weights are read by course_lib.registry.load_shipped only; cached runs by train()'s resume
    (checkpoints.resume_run), which the registry's obtain drives. Data cached beside a run (chapter 12's reflow
    pairs, chapter 15's teacher paths) goes through checkpoints.cached_tensors, and a learner's own saved weights
    through checkpoints.load_weights (chapter 04)."""
    allowed = {"load_tensors": {"checkpoints.py", "registry.py"},
               "load_checkpoint": {"checkpoints.py"}, "resume_run": {"checkpoints.py", "training.py"}}[reader]
    users = set()
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == reader:
                users.add(str(path.relative_to(PACKAGE)))
    assert users <= allowed, users - allowed


def test_no_module_imports_another_modules_private_name():
    crossing = []
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.module is not None or isinstance(node, ast.ImportFrom) and node.level:
                crossing += [f"{path.relative_to(PACKAGE)}: {a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert not crossing, crossing
