"""The layering: docs/architecture.md's import picture is the code's, the foundation imports nothing
above it, the data plane never imports the control plane, and library code does not print."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "platform" / "chiml"
# Imported by every layer, importing nothing above them (not drawn in the picture).
FOUNDATION = {"chiml", "errors", "progress", "plan", "sites", "config", "state", "cluster", "paths", "environ"}
# Modules that are programs (``python -m ...``) or that draw: their output is their job.
MAY_PRINT = {
    "chiml/cli",  # the only renderer
    "chiml/lifecycle/runner.py", "chiml/lifecycle/worker.py", "chiml/local/exec_program.py",  # child processes
    "chiml/lifecycle/supervise.py", "chiml/optimize/bench_pod.py",  # a Job pod's program (its log is the run's)
    "chiml/frameworks/__init__.py",  # the probe it runs in a child interpreter prints its answer
    "chiml/local/kernelspec.py",  # a script the trainer image's build runs (services/trainer/Dockerfile)
}  # fmt: skip


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("chiml", "chiml_serving", "chiml_contract", exclude_type_checking_imports=True)


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] in ("chiml_serving", "chiml_contract"):
        return parts[0]
    return parts[1] if len(parts) > 1 else "chiml"


def _code_edges(graph: grimp.ImportGraph) -> set[tuple[str, str]]:
    edges = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            source, target = _unit(module), _unit(imported)
            if source != target:
                edges.add((source, target))
    return edges


def _doc_edges() -> set[tuple[str, str]]:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```mermaid\n(.*?)```", text, re.S) if b.startswith("%% imports"))
    return set(re.findall(r"^\s*(\w+) --> (\w+)\s*$", block, re.M))


def test_the_architecture_picture_is_the_code(graph: grimp.ImportGraph) -> None:
    code = {(a, b) for a, b in _code_edges(graph) if b not in FOUNDATION and a not in FOUNDATION}
    doc = _doc_edges()
    assert code - doc == set(), "imports the picture in docs/architecture.md lacks"
    assert doc - code == set(), "edges in docs/architecture.md the code does not have"


def test_the_foundation_imports_nothing_above_it(graph: grimp.ImportGraph) -> None:
    upward = {(a, b) for a, b in _code_edges(graph) if a in FOUNDATION and b not in FOUNDATION}
    assert upward == {("chiml", "sdk")}  # the package root's lazy `chiml.Platform`


def test_the_data_plane_never_imports_the_control_plane(graph: grimp.ImportGraph) -> None:
    assert not any(_unit(m) == "chiml_serving" and _unit(i) not in ("chiml_serving", "chiml_contract")
                   for m in graph.modules for i in graph.find_modules_directly_imported_by(m))


def test_the_contract_imports_neither_plane(graph: grimp.ImportGraph) -> None:
    """Both planes depend on the contract package, and it on nothing of theirs."""
    imported = {_unit(i) for m in graph.modules if _unit(m) == "chiml_contract"
                for i in graph.find_modules_directly_imported_by(m)}
    assert imported <= {"chiml_contract"}, imported


def test_only_the_cli_renders() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if any(relative == allowed or relative.startswith(allowed + "/") for allowed in MAY_PRINT):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{relative}:{node.lineno} print()")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rich":
                offenders.append(f"{relative}:{node.lineno} imports rich")
    assert offenders == []
