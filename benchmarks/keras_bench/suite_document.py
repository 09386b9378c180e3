"""The suite document (orchestrator → payload): which suite to run, for which run, with which params."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from keras_bench.errors import SuiteDocumentError
from keras_bench.params import describe_value

SUITE_DOCUMENT_VERSION = 1
_FIELDS = ("schema_version", "suite", "run_id", "params")


@dataclass(frozen=True)
class SuiteDocument:
    """A checked suite document."""

    suite: str
    run_id: str
    params: dict[str, object]  # as received: the suite's ParamSpecs check them and fill defaults


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def read_suite_document(path: Path) -> dict[str, object]:
    """Reads the suite document's JSON object without checking its fields.

    Args:
        path: The ``--suite`` file.

    Returns:
        The decoded object.

    Raises:
        SuiteDocumentError: When the file is unreadable, not JSON (NaN, Infinity included) or not an object.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except OSError as exc:
        raise SuiteDocumentError(f"suite document {path}: cannot read it: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise SuiteDocumentError(f"suite document {path}: invalid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise SuiteDocumentError(f"suite document {path}: expected a JSON object, received {describe_value(raw)}")
    return raw


def parse_suite_document(raw: Mapping[str, object], known_suites: Collection[str]) -> SuiteDocument:
    """Checks the fields of a suite document.

    Args:
        raw: From ``read_suite_document``.
        known_suites: Names of the suites this payload can run.

    Returns:
        The checked document; a missing ``params`` is an empty object.

    Raises:
        SuiteDocumentError: For an unknown field or a missing or bad one; the message names the field, echoes
            the value received and says what is accepted.
    """
    for name in sorted(raw):
        if name not in _FIELDS:
            raise SuiteDocumentError(
                f"suite document field '{name}': unknown field, received {describe_value(raw[name])}; "
                f"accepted fields: {', '.join(_FIELDS)}"
            )
    version = raw.get("schema_version")
    if isinstance(version, bool) or version != SUITE_DOCUMENT_VERSION:
        raise SuiteDocumentError(
            f"suite document field 'schema_version': expected {SUITE_DOCUMENT_VERSION}, "
            f"received {describe_value(version)}"
        )
    suite = raw.get("suite")
    if not isinstance(suite, str) or suite not in known_suites:
        raise SuiteDocumentError(
            f"suite document field 'suite': expected one of {', '.join(sorted(known_suites))}, "
            f"received {describe_value(suite)}"
        )
    run_id = raw.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise SuiteDocumentError(
            f"suite document field 'run_id': expected a non-empty string, received {describe_value(run_id)}"
        )
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise SuiteDocumentError(
            f"suite document field 'params': expected an object, received {describe_value(params)}"
        )
    return SuiteDocument(suite=suite, run_id=run_id, params=params)
