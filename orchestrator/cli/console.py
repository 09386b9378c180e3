"""The two consoles every command prints to (results on stdout, errors and notes on stderr), and the ways a command's
results reach them or its -o file: JSON for scripts, a listing, tables or text."""

from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console, RenderableType

from orchestrator.errors import SpecError

# Piped output (CI logs, files) is not folded at 80 columns: reports are wide. A COLUMNS the user set wins. No
# emoji codes: text the user typed (an Azure image "publisher:offer:sku:version", a run name) is printed as typed.
out = Console(highlight=False, soft_wrap=True, emoji=False,
              width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

Row = TypeVar("Row")


def json_text(data: object) -> str:
    """Strict JSON for scripts: a number that is not finite (a store written before inputs were checked) is null,
    never the ``Infinity`` or ``NaN`` that JSON parsers refuse; dates and paths are strings."""

    def clean(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    return json.dumps(clean(json.loads(json.dumps(data, default=str))), indent=2, allow_nan=False)


def money_text(usd: float | None) -> str:
    """Returns dollars as the tables show them (``$0.0123``); "" when not known."""
    return "" if usd is None else f"${usd:.4f}"


def duration_text(seconds: float | None) -> str:
    """Returns a duration as the tables show it (``2m05.3s``, ``9.1s``); "" when not known."""
    if seconds is None:
        return ""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s" if minutes else f"{rest:.1f}s"


def time_text(iso: str) -> str:
    """Returns an ISO timestamp to the second, as the tables show it: ``2026-11-28 18:01:02``."""
    return iso[:19].replace("T", " ")


def print_listing(rows: Sequence[Row], *, as_json: bool, record: Callable[[Row], object], empty: str, title: str,
                  columns: Sequence[str], right: Collection[str], cells: Callable[[Row], Sequence[str]]) -> None:
    """Prints what a listing command (``status``, ``campaign list``) found: JSON with ``--json``, else a table, or
    the ``empty`` sentence when there is nothing.

    Args:
        record: a row as JSON data.
        columns: the table's column names; those in ``right`` are right-aligned (figures).
        cells: a row's cells, one per column (rich markup).
    """
    if as_json:
        click.echo(json_text([record(row) for row in rows]))
        return
    if not rows:
        out.print(empty)
        return
    # Loaded when a table is drawn: at the top, rich.table adds 10 ms to the 0.2 s of `orchestrate --help`.
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*cells(row))
    out.print(table)


def check_output(path: Path) -> None:
    """Refuses an -o path that cannot be written, before any work is done.

    Raises:
        SpecError: the path is a directory, or its directory does not exist.
    """
    if path.is_dir():
        raise SpecError("-o", str(path), "a file path (this is a directory)")
    if not path.parent.is_dir():
        raise SpecError("-o", str(path), f"a file in an existing directory ({path.parent} does not exist)")


def write_output(text: str, output: Path | None) -> None:
    """Writes a command's text to its -o file (saying so on stderr), else to stdout."""
    if output is not None:
        output.write_text(text)
        err.print(f"wrote {output}")
    else:
        click.echo(text, nl=False)


def print_tables(tables: Iterable[RenderableType], output: Path | None) -> None:
    """Prints tables to the terminal, or to the -o file as plain text 250 columns wide."""
    if output is None:
        for table in tables:
            out.print(table)
        return
    buffer = io.StringIO()
    console = Console(file=buffer, width=250, color_system=None)
    for table in tables:
        console.print(table)
    write_output(buffer.getvalue(), output)
