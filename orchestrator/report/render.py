"""Renderers: a rich table for the terminal, Markdown, CSV, JSON and Parquet (the HTML report is in ``html.py``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from rich.console import Console, ConsoleOptions
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
    return printable(value)  # text (a run's name is user input) goes to a terminal or a page


# Short labels for the human-facing formats (table, md); csv and json carry every column under its own name.
LABELS = {
    "run_id": "run",
    "machine_type": "machine",
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
# Run columns a reader scans first (the run's name: the user's label; the host a row is of: a machine, or "all N"
# for a run's total), and the ones that only csv/json need.
_LEAD = ["run_id", "name", "host", "machine_type", "state", "provider", "suite"]
_TAIL = ["duration_s", "cost_usd"]
_HIDDEN = {"created_at", "unit", "metadata_json"}
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


def _reading_columns(frame: pd.DataFrame) -> list[str]:
    """Returns the columns a reader scans, in reading order (run, name, host, recipe, figures, duration and cost).

    Columns that are empty everywhere are left out.
    """
    from orchestrator.report.frame import VARIANT_KEYS

    lead = [c for c in _LEAD if c in frame.columns]
    variants = [c for c in VARIANT_KEYS if c in frame.columns]
    tail = [c for c in _TAIL if c in frame.columns]
    taken = {*lead, *variants, *tail, *_HIDDEN}
    if "benchmark" in frame.columns:  # the samples view: one figure per row, the run's facts are in status
        lead = [c for c in ("run_id", "name", "host") if c in frame.columns]
        tail, figures = [], ["benchmark", "metric", "value", "unit"]
    else:
        figures = [
            c for c in frame.columns
            if c not in taken and (c in _HEADLINE_LABELS or c.rsplit(".", 1)[-1] in HEADLINE_METRICS)
        ]
    return [c for c in lead + variants + figures + tail if c in frame.columns and frame[c].notna().any()]


def _label(column: str) -> str:
    return LABELS.get(column) or _metric_label(column)


def _display(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Returns the given columns (default: the reading columns) under their short labels."""
    return frame[list(columns or _reading_columns(frame))].rename(columns=_label)


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
    """Returns the columns a reader scans (run, name, host, recipe, headline figures, duration, cost) under short
    labels."""
    return _display(frame)


def pick_columns(frame: pd.DataFrame, names: str) -> list[str]:
    """Returns the columns named in a comma-separated list (``--columns``), in the order given.

    Raises:
        SpecError: a name that is not a column of the frame; the message lists the accepted ones.
    """
    from orchestrator.errors import SpecError

    picked = [name.strip() for name in names.split(",") if name.strip()]
    accepted = ", ".join(str(column) for column in frame.columns)
    for name in picked:
        if name not in frame.columns:
            raise SpecError("--columns", name, accepted)
    if not picked:
        raise SpecError("--columns", names, f"a comma-separated list of: {accepted}")
    return list(dict.fromkeys(picked))


# A text cell that a spreadsheet would run as a formula starts with one of these (OWASP, "CSV Injection").
_FORMULA = re.compile(r"[=+\-@\t\r]")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_RISKY = re.compile(r"^[=+\-@\t\r]|\r")  # a formula's start, or a carriage return a CSV writer leaves unquoted


def spreadsheet_safe(value: object) -> object:
    """Returns a cell that a spreadsheet opening the CSV shows as text rather than running as a formula.

    Text that starts with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading apostrophe (OWASP's
    rule); numbers, and text that is only a number ("-0.28"), are kept as they are. A carriage return inside text
    becomes a line feed, which the CSV writer quotes (a bare one would end the row in a spreadsheet).
    """
    if not isinstance(value, str):
        return value
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    if _FORMULA.match(value) and not _NUMBER.fullmatch(value):
        return "'" + text
    return text


def spreadsheet_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns a copy of the frame with every text cell and column name passed through :func:`spreadsheet_safe`."""
    safe = frame.rename(columns=spreadsheet_safe)
    for position in range(safe.shape[1]):
        column = safe.iloc[:, position]
        if column.dtype.kind != "O" and str(column.dtype) != "string":
            continue  # numbers, booleans and dates are not text
        try:
            found = column.str.contains(_RISKY)  # NaN for cells that are not text
        except AttributeError:  # no text in the column at all
            continue
        risky = found.fillna(False).astype(bool)
        if risky.any():
            safe.iloc[:, position] = column.where(~risky, column[risky].map(spreadsheet_safe))
    return safe


# Unicode control characters (C0, C1) and the bidirectional overrides that can make text read as other text.
_CONTROL = re.compile("[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """Returns the text with control characters (terminal escapes, bidi overrides…) removed; tabs and line
    breaks become spaces."""
    value = str(text)
    if not _CONTROL.search(value):
        return value
    return _CONTROL.sub("", re.sub("[\t\n\r\u0085]", " ", value))


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


# Columns that tell rows apart or that users copy (a deploy row is its variant): never left out for width, never cut.
KEEP = frozenset({"run", "run_id", "host", "state", "variant"})
# The figures a narrow table keeps first, after the run, its name and the recipe keys that differ between rows.
_FIGURES_FIRST = [
    "train_images_per_sec", "test_accuracy", "cost_usd", "train_images_per_usd", "speedup_over_baseline",
    "inference_images_per_sec", "usd_per_million_train_images", "cost_to_accuracy_usd",
]
_TEXT_WIDTH = 12  # a long text cell (a run's name) is cut to this, then grows into the width left over
_LISTED = 4  # columns a caption names before "…"


def rich_table(frame: pd.DataFrame, title: str, columns: Sequence[str] | None = None) -> FittedTable:
    """Returns the frame as a table for the terminal: the given columns (default: the reading columns, see
    :func:`display_frame`) under short labels, as many as the console is wide, and never a run id, host or
    state cut (see :class:`FittedTable`)."""
    raw = list(columns) if columns else _reading_columns(frame)
    priority = raw if columns else _priority(frame, raw)
    return FittedTable(frame[raw].rename(columns=_label), title, caption="all columns: --format csv or json",
                       priority=[_label(column) for column in priority],
                       names={_label(column): column for column in raw})


def _priority(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Orders reading columns by how much a reader misses them: the row's identity first (run, host, state, the
    recipe keys that differ between rows), then its name and headline figures; provider, suite and duration last."""
    from orchestrator.report.frame import VARIANT_KEYS

    recipe = [c for c in columns if c in VARIANT_KEYS]
    varying = [c for c in recipe if frame[c].astype(str).nunique() > 1]
    first = [c for c in ("run_id", "host", "machine_type", "state", "benchmark", "metric", "value") if c in columns]
    last = [c for c in recipe if c not in varying] + [c for c in ("provider", "suite", "duration_s", "unit")
                                                      if c in columns]
    ordered = [*first, *varying, *(c for c in ("name", *_FIGURES_FIRST) if c in columns)]
    return list(dict.fromkeys([*ordered, *(c for c in columns if c not in last), *last]))


def frame_table(
    shown: pd.DataFrame, title: str, caption: str | None = None, formats: Mapping[str, str] | None = None,
    priority: Sequence[str] = (),
) -> FittedTable:
    """Returns every column of the frame as a table, numbers right-aligned, as many columns as the console is wide.

    Args:
        formats: a format spec per column (e.g. ``{"p50 ms": ".3f"}``) for numbers; others use :func:`format_cell`.
        priority: column labels, most wanted first, for a console too narrow for all; the others follow in order.
    """
    return FittedTable(shown, title, caption=caption, formats=dict(formats or {}), priority=list(priority))


@dataclass
class FittedTable:
    """A rich renderable: a table that shows as many of its columns as the console is wide, none of them cut.

    Columns go in by ``priority``; one that does not fit is left out whole (and named in the caption) rather than
    squeezed to "succeed…". The columns in :data:`KEEP` (run id, host, state, variant) are always shown and never cut; a
    long text cell of another column (a run's name) may be cut to a few words. Printed where there is no width to
    fit (``width=None``), every column is shown whole.
    """

    shown: pd.DataFrame  # the columns under their labels, in display order
    title: str
    caption: str | None = None
    formats: Mapping[str, str] = field(default_factory=dict)  # a number format spec per column label
    priority: Sequence[str] = ()  # labels, most wanted first; the others follow in display order
    names: Mapping[str, str] = field(default_factory=dict)  # label → the column name that --columns takes

    def __post_init__(self) -> None:
        from rich.cells import cell_len

        specs = [self.formats.get(str(column)) for column in self.shown.columns]
        self._cells = [[_formatted(value, spec) for value, spec in zip(row, specs, strict=True)]
                       for row in self.shown.itertuples(index=False)]
        self._numeric = [self.shown.iloc[:, i].dtype.kind in "fiu" for i in range(self.shown.shape[1])]
        self._natural = [max([cell_len(str(column)), *(cell_len(row[i]) for row in self._cells)])
                         for i, column in enumerate(self.shown.columns)]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Table]:
        yield self.table(options.max_width)

    def table(self, width: int | None) -> Table:
        """Returns the rich Table for a console ``width`` columns wide (None: no limit)."""
        from rich.cells import cell_len
        from rich.table import Table
        from rich.text import Text

        labels = [str(column) for column in self.shown.columns]
        wanted = [i for label in self.priority for i, name in enumerate(labels) if name == label]
        order = list(dict.fromkeys([*(i for i in range(len(labels)) if labels[i] in KEEP), *wanted,
                                    *range(len(labels))]))
        widths: dict[int, int] = {}
        used = 1  # the table's left edge; each column adds its width, two spaces of padding and a rule
        for i in order:  # text other than the kept columns (a long name) comes in short, and grows after
            fits = self._natural[i] if labels[i] in KEEP or self._numeric[i] or width is None else \
                min(self._natural[i], max(_TEXT_WIDTH, cell_len(labels[i])))
            if labels[i] in KEEP or width is None or used + fits + 3 <= width:
                widths[i] = fits
                used += fits + 3
        for i in order:
            if i in widths and width is not None and used < width:
                grown = min(self._natural[i], widths[i] + width - used)
                used += grown - widths[i]
                widths[i] = grown
        left_out = [self.names.get(labels[i], labels[i]) for i in order if i not in widths]
        caption = self.caption
        if left_out:
            named = ", ".join(left_out[:_LISTED]) + ("…" if len(left_out) > _LISTED else "")
            caption = f"{len(left_out)} more column(s) than {width} characters hold: {named}; " \
                      "pick with --columns, or all with --format csv or json"
        table = Table(title=title_text(self.title), show_lines=False, caption=caption and title_text(caption))
        shown = sorted(widths)
        for i in shown:
            table.add_column(Text(labels[i]), justify="right" if self._numeric[i] else "left", no_wrap=True,
                             width=widths[i], overflow="ellipsis")
        for row in self._cells:
            table.add_row(*(Text(row[i]) for i in shown))
        return table


def title_text(title: str) -> str:
    """Returns a title or caption with rich markup escaped, so a name in it is shown as typed."""
    from rich.markup import escape

    return escape(printable(title))


def _formatted(value: object, spec: str | None) -> str:
    if spec is None or not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return format_cell(value)
    return format(value, spec)


def render_text(
    frame: pd.DataFrame, fmt: str, *, reading: bool = True, formats: Mapping[str, str] | None = None,
    columns: Sequence[str] | None = None,
) -> str:
    """Renders a frame as Markdown, CSV or JSON (records) text.

    Markdown shows the reading columns (:func:`display_frame`) unless ``reading`` is False (every column), each
    number formatted by ``formats`` (a spec per column) or :func:`format_cell`. CSV is for spreadsheets: a text cell
    that would run as a formula is written as text (:func:`spreadsheet_safe`). JSON keeps every value as it is.

    Args:
        columns: only these columns (names as in CSV), in this order; see :func:`pick_columns`.
    """
    if fmt == "md":
        shown = _display(frame, columns) if reading else frame[list(columns)] if columns else frame
        specs = formats or {}
        cells = shown.apply(lambda column: column.map(lambda value: _formatted(value, specs.get(str(column.name)))))
        # Formatted already: tabulate must not parse "0.270" back into 0.27.
        align = ["right" if shown[column].dtype.kind in "fiu" else "left" for column in shown.columns]
        return str(cells.to_markdown(index=False, disable_numparse=True, colalign=align)) + "\n"
    if columns:
        frame = frame[list(columns)]
    if fmt == "csv":
        return str(spreadsheet_frame(frame).to_csv(index=False))
    if fmt == "json":
        return str(frame.to_json(orient="records", indent=2)) + "\n"
    raise ValueError(f"format expected one of {FORMATS}, received {fmt!r}")
