"""The import rules of DESIGN §1–§2, checked on the source: a layer that imports across them fails here, and so does
any import cycle inside ``orchestrator/``.

Every import counts: at module top, inside functions and under ``TYPE_CHECKING`` alike (a cycle dodged by an import
inside a function is still a cycle for the reader). ``docs/architecture.md`` draws the layers these rules keep.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from orchestrator.machine import PROVIDER_NAMES
from orchestrator.providers import PROVIDERS

ROOT = Path(__file__).resolve().parents[2] / "orchestrator"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the modules of the same tree it imports (names that are not modules of the tree are left out)."""
    paths = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    return {name: {imported for imported in _imports(path) if imported in paths and imported != name}
            for name, path in paths.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import cycles of a graph: its strongly connected components of more than one module (Tarjan), each
    sorted, and a module that imports itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_cycle_finder_finds_a_planted_cycle_and_none_in_a_tree() -> None:
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(planted) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_under_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "orchestrator"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from orchestrator import b\n")
    (package / "b.py").write_text("def f():\n    from orchestrator.a import thing\n")
    graph = import_graph(package)
    assert "orchestrator.b" in graph["orchestrator.a"] and graph["orchestrator.b"] == {"orchestrator.a"}
    assert cycles(graph) == [["orchestrator.a", "orchestrator.b"]]


def test_no_import_cycle_inside_the_orchestrator() -> None:
    assert cycles(import_graph()) == []


# The layers of docs/architecture.md, top down: a module imports only modules of its own package or of a lower row.
LAYERS = (
    ("__main__",),
    ("cli",),
    ("campaign",),
    ("api",),
    ("lifecycle",),
    ("provision",),
    ("run_steps", "teardown"),
    ("plan", "providers", "report", "eviction", "payload_logs"),
    ("catalog", "remote"),
    ("spec", "store", "inventory", "results"),
    ("access", "clouds", "cost", "fanout", "inputs", "payload_files"),
    ("errors",),
    ("machine",),
)


def _part(module: str) -> str:
    """The layer entry a module belongs to: its package under orchestrator/, or its own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_imports_only_its_own_package_or_a_lower_layer() -> None:
    row = {part: depth for depth, parts in enumerate(LAYERS) for part in parts}
    graph = import_graph()
    unplaced = sorted(m for m in graph if _part(m) and _part(m) not in row)
    assert unplaced == [], "add these to LAYERS (and to docs/architecture.md)"
    upward = [f"{module} imports {imported}" for module, imports in sorted(graph.items()) if _part(module)
              for imported in sorted(imports) if _part(imported) and _part(imported) != _part(module)
              and row[_part(imported)] <= row[_part(module)]]
    assert upward == []


# What LAYERS allows but the design does not: imports down the table that would tie a layer to a lower one it must
# not know. (An import up the table, or across one row, fails the test above already.)
FORBIDDEN = {
    # Providers make machines exist and go away: no store, no remote code, no SSH.
    "providers": ("orchestrator.store", "orchestrator.remote", "paramiko"),
    # Remote code reaches machines without knowing who made them or what was recorded.
    "remote": ("orchestrator.store",),
    # The catalog decides what to launch and at what price; it records nothing.
    "catalog": ("orchestrator.store",),
    # The plan reads the suites, the catalog and the inventory; the payload's param check is api's own step.
    "plan": ("orchestrator.remote", "orchestrator.store"),
    # Reports read the store's figures; they reach no machine.
    "report": ("orchestrator.remote",),
}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else [ROOT / f"{package}.py"]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_it_may(package: str) -> None:
    bad = [
        f"{path.relative_to(ROOT.parent)} imports {module}"
        for path in _modules(package)
        for module in _imports(path)
        if any(module == banned or module.startswith(banned + ".") for banned in FORBIDDEN[package])
    ]
    assert bad == []


def test_the_control_plane_never_imports_tensorflow_keras_or_the_payload() -> None:
    banned = ("tensorflow", "keras", "keras_bench", "jax", "torch")
    bad = [f"{path.relative_to(ROOT.parent)} imports {module}" for path in sorted(ROOT.rglob("*.py"))
           for module in _imports(path) if module.split(".")[0] in banned]
    assert bad == []


def test_the_core_reads_no_provider_detail_from_extra() -> None:
    offenders = [str(path.relative_to(ROOT.parent)) for path in sorted(ROOT.rglob("*.py"))
                 if "providers" not in path.parts and ".extra[" in path.read_text() or
                 "providers" not in path.parts and ".extra.get(" in path.read_text()]
    assert offenders == []


def test_every_provider_name_the_spec_accepts_has_its_code_and_no_other() -> None:
    assert sorted(PROVIDERS) == sorted(PROVIDER_NAMES)
