"""Validates the payload's results document against the schema the payload ships (DESIGN §4)."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.errors import PayloadFailed
from orchestrator.payload_files import results_schema


def parse_results(raw: bytes) -> dict[str, Any]:
    """Parses and validates a results document.

    Raises:
        PayloadFailed: the bytes are not JSON, or the document does not match the schema; the message
            names the first offending place.
    """
    import jsonschema  # ~0.1 s: only when there is a document to check

    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PayloadFailed(f"the results document is not valid JSON: {error}") from None
    validator = jsonschema.Draft202012Validator(results_schema())
    problems = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if problems:
        first = problems[0]
        where = "/".join(str(part) for part in first.absolute_path) or "(document)"
        raise PayloadFailed(
            f"the results document is invalid at {where}: {first.message}"
            + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
        )
    if not isinstance(document, dict):
        raise PayloadFailed("the results document is not a JSON object")
    return document
