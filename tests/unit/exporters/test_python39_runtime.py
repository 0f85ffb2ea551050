"""Code that runs on the database hosts with the distribution's python3 (Debian 11: 3.9) must not
evaluate a PEP 604 union (`float | None`) at run time: annotations are strings there (`from
__future__ import annotations`), but a type alias, a cast() or an isinstance() argument is
evaluated at import or call and raises TypeError on 3.9. ruff's per-file py39 target does not
catch that (the syntax is valid), so this walks the modules' syntax trees outside annotations."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HOST_SIDE = sorted([*REPO.glob("exporters/*.py"), REPO / "bgdb/jobs.py", REPO / "bgdb/migrate.py"])
TYPE_NAMES = {"None", "int", "float", "str", "bytes", "bool", "list", "dict", "tuple", "set",
              "Any", "object"}


def _type_like(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Name):
        return node.id in TYPE_NAMES or node.id[:1].isupper()
    if isinstance(node, ast.Subscript):  # list[int], Mapping[str, Any]
        return True
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)


def runtime_unions(source: str) -> list[int]:
    """Lines with an `X | Y` of types outside annotations."""
    tree = ast.parse(source)
    annotations: set[int] = set()
    for node in ast.walk(tree):
        parts: list[ast.expr | None] = []
        if isinstance(node, ast.AnnAssign):
            parts.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(node.returns)
            args = node.args
            parts.extend(a.annotation for a in [*args.posonlyargs, *args.args,
                                                *args.kwonlyargs])
            parts.extend(a.annotation for a in (args.vararg, args.kwarg) if a is not None)
        for part in parts:
            if part is not None:
                annotations.update(id(n) for n in ast.walk(part))
    return sorted(node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
                  and id(node) not in annotations
                  and _type_like(node.left) and _type_like(node.right))


def test_the_walk_finds_a_runtime_union_and_ignores_annotations() -> None:
    source = ("from __future__ import annotations\n"
              "def f(x: int | None) -> str | None:\n    y: float | None = None\n    return y\n"
              "Alias = tuple[str, float | None]\n"
              "flags = 1 | 2\n")
    assert runtime_unions(source) == [5]


@pytest.mark.parametrize("path", HOST_SIDE, ids=lambda p: str(p.relative_to(REPO)))
def test_no_runtime_pep604_union_in_host_side_code(path: Path) -> None:
    lines = runtime_unions(path.read_text())
    assert not lines, f"{path.relative_to(REPO)}: `X | Y` evaluated at run time on lines " \
        f"{lines}: Debian 11's python3 (3.9) raises TypeError; use Optional/Union there"
