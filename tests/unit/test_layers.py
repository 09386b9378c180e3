"""The import rules of DESIGN §1–§2, checked on the source: a layer that imports across them fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "orchestrator"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else [ROOT / f"{package}.py"]


FORBIDDEN = {
    # Providers make machines exist and go away: no store, remote, SSH, prepare or lifecycle.
    "providers": ("orchestrator.store", "orchestrator.remote", "orchestrator.lifecycle", "orchestrator.teardown",
                  "orchestrator.api", "paramiko"),
    # Remote code reaches machines without knowing who made them.
    "remote": ("orchestrator.providers", "orchestrator.store", "orchestrator.lifecycle"),
    # The catalog decides what to launch; it never launches.
    "catalog": ("orchestrator.providers", "orchestrator.remote", "orchestrator.lifecycle", "orchestrator.store"),
    "machine": ("orchestrator.providers", "orchestrator.remote", "orchestrator.store"),
}


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
