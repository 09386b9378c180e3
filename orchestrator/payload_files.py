"""Where the payload's files are: the ``keras_bench`` package (source checkout or installed), its suite files and
its results schema.

The orchestrator never imports ``keras_bench``; ``find_spec`` on a top-level package finds its directory without
executing it. Pure lookups, no remote and no provider: the spec (suite files) and the results check read here, and
``remote/payload.py`` packs the files it finds.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestrateError

PAYLOAD_PACKAGE = "keras_bench"
RESULTS_SCHEMA_FILE = "results.schema.json"


def payload_source_dir() -> Path:
    """Returns the directory of the ``keras_bench`` package (source checkout or installed).

    Raises:
        OrchestrateError: the package is not installed.
    """
    override = os.environ.get("ORCHESTRATE_PAYLOAD_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec(PAYLOAD_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OrchestrateError(
            "the payload package keras_bench is not installed",
            hint="install Orchestrate with `pip install -e .` from its source tree",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def suites_dir() -> Path:
    """Returns the directory of the named suite files (``benchmarks/suites`` in a source checkout)."""
    source = payload_source_dir()
    # Installed from a wheel: shipped inside the package. In a source checkout: benchmarks/suites.
    for candidate in (source / "suites_yaml", source.parent / "suites"):
        if candidate.is_dir():
            return candidate
    raise OrchestrateError(f"no suites directory next to the payload package at {source}")


def results_schema() -> dict[str, Any]:
    """Returns the results-document JSON Schema that the payload ships (the contract of DESIGN §4)."""
    schema: dict[str, Any] = json.loads((payload_source_dir() / RESULTS_SCHEMA_FILE).read_text())
    return schema
