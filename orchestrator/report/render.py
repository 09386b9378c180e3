"""Renderers: a rich table for the terminal, Markdown, CSV and JSON."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

FORMATS = ("table", "md", "csv", "json")


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


# What the human-facing formats (table, md) show, with short labels; csv and json carry every column.
DISPLAY_COLUMNS = {
    "run_id": "run",
    "state": "state",
    "provider": "provider",
    "suite": "suite",
    "model": "model",
    "precision": "precision",
    "batch_size": "batch",
    "benchmark": "benchmark",
    "metric": "metric",
    "value": "value",
    "unit": "unit",
    "train_images_per_sec": "train img/s",
    "inference_images_per_sec": "infer img/s",
    "test_accuracy": "test acc",
    "duration_s": "duration s",
    "cost_usd": "cost $",
}


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """Keeps the columns a reader scans, with short labels, dropping those empty everywhere."""
    shown = frame[[c for c in DISPLAY_COLUMNS if c in frame.columns]].dropna(axis=1, how="all")
    return shown.rename(columns=DISPLAY_COLUMNS)


def rich_table(frame: pd.DataFrame, title: str) -> Table:
    """Returns the frame as a rich Table, one column per frame column."""
    from rich.table import Table

    shown = _display(frame)
    table = Table(title=title, show_lines=False, caption="all columns: --format csv or json")
    for column in shown.columns:
        numeric = shown[column].dtype.kind in "fiu"
        table.add_column(str(column), justify="right" if numeric else "left", no_wrap=not numeric)
    for row in shown.itertuples(index=False):
        table.add_row(*(_cell(value) for value in row))
    return table


def render_text(frame: pd.DataFrame, fmt: str) -> str:
    """Renders a frame as Markdown, CSV or JSON (records) text."""
    if fmt == "md":
        shown = _display(frame)
        return str(shown.map(_cell).to_markdown(index=False)) + "\n"
    if fmt == "csv":
        return str(frame.to_csv(index=False))
    if fmt == "json":
        return str(frame.to_json(orient="records", indent=2)) + "\n"
    raise ValueError(f"format expected one of {FORMATS}, received {fmt!r}")
