"""The deploy package's imports form no circle: every module, with the function-level imports
that hide one from Python's import-time check, is placed below those it imports."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def imports(path: Path, modules: set[str]) -> set[str]:
    """The deploy modules `path` imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "deploy":
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deploy."):
            found.add((node.module or "").split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("deploy.")}
    return found & modules


def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in DEPLOY.glob("*.py")} - {"__init__"}
    return {m: imports(DEPLOY / f"{m}.py", modules) - {m} for m in modules}


def test_deploy_imports_have_no_cycle() -> None:
    try:
        order = list(TopologicalSorter(graph()).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle in deploy/: {' -> '.join(exc.args[1])}") from None
    assert order


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    # A cycle through an import inside a function (how backup.py once imported replica.py).
    (tmp_path / "a.py").write_text("from deploy import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from deploy.a import x\n")
    assert imports(tmp_path / "b.py", {"a", "b"}) == {"a"}
    g = {m: imports(tmp_path / f"{m}.py", {"a", "b"}) for m in ("a", "b")}
    try:
        list(TopologicalSorter(g).static_order())
    except CycleError:
        return
    raise AssertionError("the cycle a -> b -> a was not found")
