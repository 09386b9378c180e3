"""Renderers: a rich table for the terminal, Markdown, CSV, JSON and Parquet (the HTML report is in ``html.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from rich.table import Table

FORMATS = ("table", "md", "csv", "json", "parquet", "html")
# Formats that are files, not text for a terminal: they need an output path.
FILE_FORMATS = ("parquet", "html")


def format_cell(value: object) -> str:
    """Formats one cell for reading: blank for missing, few digits for numbers."""
    # pandas' NA (nullable integer columns) has no truth value; it is missing like None and NaN.
    if value is None or type(value).__name__ == "NAType" or (isinstance(value, float) and math.isnan(value)):
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


# Short labels for the human-facing formats (table, md); csv and json carry every column under its own name.
LABELS = {
    "run_id": "run",
    "batch_size": "batch",
    "train_images_per_sec": "train img/s",
    "inference_images_per_sec": "infer img/s",
    "test_accuracy": "test acc",
    "train_step_ms_p50": "step ms p50",
    "train_seconds": "train s",
    "duration_s": "duration s",
    "cost_usd": "cost $",
    "train_images_per_usd": "train img/$",
    "usd_per_million_train_images": "$/M train img",
    "cost_to_accuracy_usd": "$ to acc",
    "speedup_over_baseline": "speed-up",
}
# Run columns a reader scans first (the host a row is of: a machine, or "all N" for a run's total), and the
# ones that only csv/json need.
_LEAD = ["run_id", "host", "state", "provider", "suite"]
_TAIL = ["duration_s", "cost_usd"]
_HIDDEN = {"name", "created_at", "unit", "metadata_json"}
# The figures a table shows (as "benchmark.metric" or a label); step-time spreads, losses and the rest are in
# csv and json.
HEADLINE_METRICS = (
    "images_per_sec", "accuracy", "time_to_accuracy_s", "epochs_to_accuracy", "scaling_efficiency",
    "model_bytes_gzip", "latency_ms_p50", "sparsity",
)
_HEADLINE_LABELS = {
    "train_images_per_sec", "inference_images_per_sec", "test_accuracy", "train_images_per_usd",
    "usd_per_million_train_images", "cost_to_accuracy_usd", "speedup_over_baseline",
}


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """Orders columns for reading (run, host, recipe, figures, duration and cost) with short labels.

    Columns that are empty everywhere are dropped.
    """
    from orchestrator.report.frame import VARIANT_KEYS

    lead = [c for c in _LEAD if c in frame.columns]
    variants = [c for c in VARIANT_KEYS if c in frame.columns]
    tail = [c for c in _TAIL if c in frame.columns]
    taken = {*lead, *variants, *tail, *_HIDDEN}
    if "benchmark" in frame.columns:  # the samples view: one figure per row, the run's facts are in status
        lead = [c for c in ("run_id", "host") if c in frame.columns]
        tail, figures = [], ["benchmark", "metric", "value", "unit"]
    else:
        figures = [
            c for c in frame.columns
            if c not in taken and (c in _HEADLINE_LABELS or c.rsplit(".", 1)[-1] in HEADLINE_METRICS)
        ]
    shown = frame[lead + variants + figures + tail].dropna(axis=1, how="all")
    return shown.rename(columns=lambda column: LABELS.get(column) or _metric_label(column))


_BENCHMARK_WORDS = {"train_throughput": "train", "inference_throughput": "infer", "train": "", "hparams": ""}
_METRIC_WORDS = {
    "images_per_sec": "img/s", "accuracy": "acc", "time_to_accuracy_s": "time to acc s",
    "epochs_to_accuracy": "epochs to acc", "scaling_efficiency": "scaling eff", "step_time_ms_p50": "step ms p50",
}


def _metric_label(column: str) -> str:
    """Shortens a "benchmark.metric" column for reading: "train.time_to_accuracy_s" → "time to acc s"."""
    benchmark, dot, metric = column.rpartition(".")
    if not dot:
        return column
    words = [_BENCHMARK_WORDS.get(benchmark, benchmark.replace("_", " ")), _METRIC_WORDS.get(metric, metric)]
    return " ".join(word for word in words if word)


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns the columns a reader scans (run, host, recipe, headline figures, duration, cost) under short labels."""
    return _display(frame)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Writes every column of the frame to a Parquet file (needs pyarrow).

    Object columns that mix types (metadata such as ``restored`` next to numbers) are written as text, since
    Parquet wants one type per column.
    """
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            kinds = {type(v) for v in frame[column].dropna()}
            if len(kinds) > 1:
                frame[column] = frame[column].map(lambda v: None if v is None or v != v else str(v))
    frame.to_parquet(path, index=False)


def rich_table(frame: pd.DataFrame, title: str) -> Table:
    """Returns the frame's reading columns (see :func:`display_frame`) as a rich Table."""
    return frame_table(_display(frame), title, caption="all columns: --format csv or json")


def frame_table(
    shown: pd.DataFrame, title: str, caption: str | None = None, formats: Mapping[str, str] | None = None
) -> Table:
    """Returns every column of the frame as a rich Table, numbers right-aligned and never cut.

    Args:
        formats: a format spec per column (e.g. ``{"p50 ms": ".3f"}``) for numbers; others use :func:`format_cell`.
    """
    from rich.table import Table

    table = Table(title=title, show_lines=False, caption=caption)
    specs = [(formats or {}).get(str(column)) for column in shown.columns]
    cells = [[_formatted(value, spec) for value, spec in zip(row, specs, strict=True)]
             for row in shown.itertuples(index=False)]
    for i, column in enumerate(shown.columns):
        numeric = shown[column].dtype.kind in "fiu"
        # Numbers, run ids (users copy them) and hosts (which row is which) are never cut; other text may be.
        widest = max([len(row[i]) for row in cells] or [0])
        table.add_column(str(column), justify="right" if numeric else "left", no_wrap=True,
                         min_width=widest if numeric or column in ("run", "run_id", "host") else None)
    for row in cells:
        table.add_row(*row)
    return table


def _formatted(value: object, spec: str | None) -> str:
    if spec is None or not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return format_cell(value)
    return format(value, spec)


def render_text(
    frame: pd.DataFrame, fmt: str, *, reading: bool = True, formats: Mapping[str, str] | None = None
) -> str:
    """Renders a frame as Markdown, CSV or JSON (records) text.

    Markdown shows the reading columns (:func:`display_frame`) unless ``reading`` is False (every column), each
    number formatted by ``formats`` (a spec per column) or :func:`format_cell`.
    """
    if fmt == "md":
        shown = _display(frame) if reading else frame
        specs = formats or {}
        cells = shown.apply(lambda column: column.map(lambda value: _formatted(value, specs.get(str(column.name)))))
        # Formatted already: tabulate must not parse "0.270" back into 0.27.
        align = ["right" if shown[column].dtype.kind in "fiu" else "left" for column in shown.columns]
        return str(cells.to_markdown(index=False, disable_numparse=True, colalign=align)) + "\n"
    if fmt == "csv":
        return str(frame.to_csv(index=False))
    if fmt == "json":
        return str(frame.to_json(orient="records", indent=2)) + "\n"
    raise ValueError(f"format expected one of {FORMATS}, received {fmt!r}")
