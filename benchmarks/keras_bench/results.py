"""The results document (schema_version 1): sample rows, the document builder and schema validation.

``results.schema.json`` next to this module is the contract; the orchestrator validates against the same file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from keras_bench.hostinfo import HostInfo, SoftwareInfo
from keras_bench.progress import warn

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
SCHEMA_VERSION = 1

MetadataValue = str | int | float | bool | None


@dataclass(frozen=True)
class Sample:
    """One measured value, in PerfKit Benchmarker's uniform row shape."""

    benchmark: str  # what was measured: train_throughput, train, inference_throughput, ...
    metric: str  # one of the schema's closed list, see metric_names()
    value: float
    unit: str
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)  # the conditions of the measurement


@dataclass(frozen=True)
class ErrorEntry:
    """One failure, as the ``errors`` list of the document carries it."""

    stage: str  # where it failed: suite_document, params, import, data, build, train, ...
    type: str  # the exception class name
    message: str


@dataclass(frozen=True)
class Timings:
    """Where the payload's wall time went, in seconds, and when it ran (ISO-8601 UTC)."""

    started_at: str
    finished_at: str
    import_s: float
    data_s: float
    compute_s: float  # model build + fit + evaluate + inference timing; excludes imports and data
    total_s: float  # from the start of main to writing the document


def utc_now_iso() -> str:
    """Returns the current time as ISO-8601 UTC with milliseconds, e.g. ``2026-11-28T17:57:03.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """Returns the results JSON Schema, read once from ``SCHEMA_PATH``."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def metric_names() -> frozenset[str]:
    """Returns the closed list of metric names the schema accepts."""
    return frozenset(load_schema()["$defs"]["metric"]["enum"])


def build_document(
    *,
    run_id: str,
    suite: str,
    host: HostInfo,
    software: SoftwareInfo,
    params: Mapping[str, object],
    samples: Sequence[Sample],
    timings: Timings,
    errors: Sequence[ErrorEntry],
) -> dict[str, object]:
    """Assembles the results document, ``schema_version`` first.

    Args:
        run_id: The run id from the suite document.
        suite: The suite name from the suite document.
        host: The machine the payload ran on.
        software: Python, Keras and backend versions.
        params: The effective params (or the params as received when they were rejected).
        samples: Everything measured, in the order it was measured.
        timings: Where the time went.
        errors: Failures; empty on success.

    Returns:
        A JSON-ready dict.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "suite": suite,
        "host": asdict(host),
        "software": asdict(software),
        "params": dict(params),
        "samples": [
            {
                "benchmark": s.benchmark,
                "metric": s.metric,
                "value": s.value,
                "unit": s.unit,
                "metadata": dict(s.metadata),
            }
            for s in samples
        ],
        "utilisation": [],
        "timings": asdict(timings),
        "errors": [asdict(e) for e in errors],
    }


def _non_finite_paths(value: object, path: str) -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path}: {value} is not a finite number"]
    if isinstance(value, Mapping):
        return [p for key, item in value.items() for p in _non_finite_paths(item, f"{path}/{key}")]
    if isinstance(value, list | tuple):
        return [p for index, item in enumerate(value) for p in _non_finite_paths(item, f"{path}/{index}")]
    return []


def validate_document(document: Mapping[str, object]) -> list[str]:
    """Checks a document against the results schema and for NaN or infinite numbers.

    JSON Schema counts NaN as a number, so non-finite values are checked separately. When ``jsonschema`` is
    not installed, only that check runs and a warning line says so.

    Args:
        document: A document from ``build_document``.

    Returns:
        One line per problem, ``"/samples/0/metric: 'fps' is not one of [...]"``; empty when valid.
    """
    problems = _non_finite_paths(document, "")
    try:
        import jsonschema
    except ImportError:
        warn("jsonschema is not installed; the results document was not validated against its schema")
        return problems
    validator = jsonschema.Draft202012Validator(load_schema())
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        location = "/" + "/".join(str(part) for part in error.absolute_path)
        problems.append(f"{location}: {error.message}")
    return problems
