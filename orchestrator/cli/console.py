"""The two consoles every command prints to: results on stdout, errors and notes on stderr."""

from __future__ import annotations

import os
import sys

from rich.console import Console

# Piped output (CI logs, files) is not folded at 80 columns: reports are wide. A COLUMNS the user set wins. No
# emoji codes: text the user typed (an Azure image "publisher:offer:sku:version", a run name) is printed as typed.
out = Console(highlight=False, soft_wrap=True, emoji=False,
              width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def json_text(data: object) -> str:
    """Strict JSON for scripts: a number that is not finite (a store written before inputs were checked) is null,
    never the ``Infinity`` or ``NaN`` that JSON parsers refuse; dates and paths are strings."""
    import json
    import math

    def clean(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    return json.dumps(clean(json.loads(json.dumps(data, default=str))), indent=2, allow_nan=False)
