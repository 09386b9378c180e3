"""Reading what users hand us — files, run ids, pydantic-validated documents — into one clear :class:`SpecError`.

Every failure here is one line that names the field, the value received (shortened) and what is accepted, in our
words, never pydantic's or the OS's.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from orchestrator.errors import SpecError

MAX_SHOWN = 80  # characters of a received value shown in a message
MAX_RUN_ID = 200
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# pydantic's error types → what we accept, in words (ctx fields fill the braces).
_ACCEPTED = {
    "bool_type": "true or false", "bool_parsing": "true or false",
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number (not inf or nan)",
    "string_type": "text", "dict_type": "a mapping of field: value", "model_type": "a mapping of field: value",
    "model_attributes_type": "a mapping of field: value", "list_type": "a list", "tuple_type": "a list",
    "greater_than_equal": "a number >= {ge}", "greater_than": "a number > {gt}",
    "less_than_equal": "a number <= {le}", "less_than": "a number < {lt}",
    "literal_error": "one of {expected}", "enum": "one of {expected}", "missing": "a value (the field is required)",
    "extra_forbidden": "not a known field", "string_pattern_mismatch": "text matching {pattern}",
    "string_too_short": "text of at least {min_length} character(s)",
    "string_too_long": "text of at most {max_length} characters", "too_short": "at least {min_length} item(s)",
    "too_long": "at most {max_length} item(s)", "none_required": "nothing (leave it out)",
}
# pydantic tags union members in an error's location ("bool", "list[…]", "function-after[…]"): not field names.
_UNION_TAG = re.compile(r"^(bool|int|float|str|none|list\[.*\]|dict\[.*\]|[a-z-]+\[.*\]|[A-Z]\w*)$")


def one_line_path(value: str) -> str:
    """Returns a path for a remote shell (an interpreter, a work directory) when it is 1 to 1000 characters on one
    line: no newline or other control character, which would end or change the command it goes into.

    Raises:
        ValueError: it is not (a pydantic validator turns this into the field's error).
    """
    if not 0 < len(value) <= 1000 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("a path of 1 to 1000 characters, without control characters")
    return value


def shown(value: object) -> object:
    """A received value as a message shows it: text cut to :data:`MAX_SHOWN` characters, other values as they are
    unless their repr is long (then a shortened repr)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…"
    text = repr(value)
    return value if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


def spec_error(error: ValidationError, prefix: str = "", *, whole: str = "spec") -> SpecError:
    """Turns pydantic's first error into one SpecError line in our words.

    Args:
        prefix: put before the field path (e.g. ``"inventory "``).
        whole: the field named when the error is about the document itself (no location).
    """
    first = error.errors()[0]
    location = [str(part) for part in first["loc"]]
    union = bool(location) and bool(_UNION_TAG.match(location[-1])) and first["type"] != "extra_forbidden"
    while location and _UNION_TAG.match(location[-1]) and first["type"] != "extra_forbidden":
        location.pop()
    field = prefix + ".".join(location) if location else prefix + whole
    context = first.get("ctx") or {}
    received = context.get("received", first["input"])
    if union and first["type"] not in ("finite_number",):
        accepted = "a number, true/false, text, or a list of those"
    elif first["type"] in _ACCEPTED:
        accepted = _ACCEPTED[first["type"]].format(**{k: v for k, v in context.items()})
    else:
        accepted = str(first["msg"]).removeprefix("Value error, ")
    return SpecError(field.strip(), shown(received), accepted)


def read_text(path: Path, field: str, accepted: str) -> str:
    """Reads a user's text file; ``accepted`` names what it should be without an article (``"YAML file"``).

    Raises:
        SpecError: it is missing, a directory, unreadable, or not UTF-8 text.
    """
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(field, str(path), f"an existing {accepted}") from None
    except IsADirectoryError:
        raise SpecError(field, str(path), f"a {accepted}, not a directory") from None
    except UnicodeDecodeError as error:
        raise SpecError(field, str(path), f"a {accepted} in UTF-8 (byte {error.start} is not)") from None
    except OSError as error:
        raise SpecError(field, str(path), f"a readable {accepted} ({error.strerror or error})") from None


def run_id_text(text: str, field: str = "RUN") -> str:
    """Checks a run id (or a prefix of one) before it reaches the store.

    Raises:
        SpecError: it is empty, too long, or has characters no run id has.
    """
    if not text or len(text) > MAX_RUN_ID or not _RUN_ID.match(text):
        raise SpecError(field, shown(text), "a run id such as r-20261128-180102-3fa9, or a unique prefix of one",
                        hint="`orchestrate status` lists the runs")
    return text
