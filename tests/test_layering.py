"""The import rule of README's "Layout": read from the source, so a wrong import fails here.

Levels, lowest first: ``analysis`` → ``server.storage``, ``server.config``, ``server.progress`` →
each feature (``runs``, ``featureviz``, ``decompositions``, ``notes``, ``compare``) → ``jobs`` →
``cli`` and ``web``. A module imports only its own level or lower. A feature's ``read`` module
imports storage, other ``read`` modules and plain-Python (torch-free) ``analysis`` modules only.
The web reads through ``read``, registers through ``runs.register``, writes notes through
``notes.write`` and asks for work through the jobs' torch-free front door; it imports no compute
and no analysis module that loads torch.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ("runs", "featureviz", "decompositions", "notes", "compare")
READ_MODULES = {f"server.{name}.read" for name in (*FEATURES, "jobs")}
# What the web may import, besides its own modules and the torch-free analysis modules.
WEB_ALLOWED = {
    "server.config",
    "server.progress",  # the Progress protocol an export reports through
    "server.runs.register",
    "server.notes.write",
    "server.jobs.state",
    "server.jobs.planning",
    "server.jobs.submit",
    "server.jobs.queue",
    *READ_MODULES,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def sources() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in ("analysis", "server")
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _resolve(name: str) -> str | None:
    """The project module that ``name`` (a module, or a module's attribute) refers to."""
    while name and name not in sources():
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


@cache
def imports(module: str, load_time_only: bool = False) -> frozenset[str]:
    """Every module ``module`` imports (project modules resolved, others by their top name).
    ``load_time_only``: only what runs when it is imported (not inside functions, not under
    ``TYPE_CHECKING``)."""
    tree = ast.parse(sources()[module].read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if load_time_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return
        if load_time_only and isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            names = []
        for name in names:
            found.add(_resolve(name) or name.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return frozenset(found)


def loads_torch(module: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether importing ``module`` imports torch, through any chain of load-time imports."""
    direct = imports(module, load_time_only=True)
    if direct & {"torch", "torchvision", "timm"}:
        return True
    return any(
        loads_torch(other, seen | {module})
        for other in direct
        if other in sources() and other not in seen
    )


def level(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "analysis":
        return 0
    if len(parts) == 1 or parts[1] in ("storage", "config", "progress"):
        return 1
    if parts[1] in FEATURES:
        return 2
    if parts[1] == "jobs":
        return 3
    assert parts[1] in ("cli", "web"), f"{module} has no level: add its package to this test"
    return 4


def project_imports(module: str) -> set[str]:
    return {name for name in imports(module) if name in sources()}


def test_the_source_is_found():
    """The rule below is only as good as the graph: it must see the modules and their imports."""
    assert {"server.web.app", "server.runs.stages", "analysis.sweep"} <= set(sources())
    assert "server.storage.schema" in project_imports("server.runs.read")
    assert "server.runs.register" in project_imports("server.web.runs")
    assert loads_torch("analysis.sweep")
    assert not loads_torch("analysis.resize")


@pytest.mark.parametrize("module", sorted(sources()))
def test_nothing_imports_upward(module):
    upward = sorted(other for other in project_imports(module) if level(other) > level(module))
    assert not upward, f"{module} imports {upward}, above it in README's layout"


@pytest.mark.parametrize("module", sorted(READ_MODULES))
def test_read_modules_import_no_compute(module):
    others = sorted(
        other
        for other in project_imports(module)
        if not other.startswith("server.storage")
        and other not in READ_MODULES
        and not (other.startswith("analysis") and not loads_torch(other))  # plain Python
    )
    assert not others, f"{module} is a read module but imports {others}"


@pytest.mark.parametrize("module", sorted(m for m in sources() if m.startswith("server.web")))
def test_the_web_reads_and_asks_but_never_computes(module):
    for other in project_imports(module):
        if other.startswith(("server.web", "server.storage")) or other in WEB_ALLOWED:
            continue
        assert other.startswith("analysis"), f"{module} imports {other}: compute, not the web's"
        assert not loads_torch(other), f"{module} imports {other}, which loads torch"


def test_no_import_cycles():
    """Load-time imports form no cycle (a cycle makes import order matter)."""
    graph = {
        module: {m for m in imports(module, load_time_only=True) if m in sources()}
        for module in sources()
    }
    state: dict[str, str] = {}

    def walk(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                cycle = [*path[path.index(other) :], other] if other in path else [other]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if other not in state:
                walk(other, [*path, other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
