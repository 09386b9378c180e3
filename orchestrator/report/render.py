"""Renderers: a rich table for the terminal, Markdown, CSV, JSON and Parquet (the HTML report is in ``html.py``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestrator.errors import SpecError
from orchestrator.report.frame import VARIANT_KEYS
from orchestrator.report.metrics import NOISY_MARK, SPREAD_BOUND, SPREADS, spread_note, spread_text

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from rich.console import Console, ConsoleOptions

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
    "baseline_caveat": "speed-up caveat",
    "spread_flag": "noisy",
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
    "usd_per_million_train_images", "cost_to_accuracy_usd", "speedup_over_baseline", "baseline_caveat",
    "spread_flag",
}
# A column shown only beside another: a speed-up is never read without what makes it not like for like.
_SHOWN_WITH = {"speedup_over_baseline": "baseline_caveat"}


def spread_cell(value: object, cv: object, bound: float) -> tuple[str, bool]:
    """Returns a throughput cell with its repeats' spread, and whether that spread is above ``bound``:
    ``"812 ±7.1% (noisy)"``, ``"812 ±0.6%"``; the figure alone when its spread is not known.

    Args:
        value: the figure (images/s, the median repeat).
        cv: the coefficient of variation of its repeats (NaN or None when not known).
        bound: the largest spread not marked.
    """
    text = format_cell(value)
    if not text or not isinstance(cv, int | float) or isinstance(cv, bool) or math.isnan(cv):
        return text, False
    noisy = cv > bound
    return f"{text} ±{spread_text(float(cv))}" + (f" {NOISY_MARK}" if noisy else ""), noisy


def has_spread(frame: pd.DataFrame) -> bool:
    """Returns whether any throughput of the frame has its repeats' spread (runs recorded before the payload
    wrote it have none)."""
    return any(cv in frame.columns and frame[cv].notna().any() for cv in SPREADS.values())


def _with_spread(frame: pd.DataFrame, bound: float) -> tuple[pd.DataFrame, list[str]]:
    """Returns the frame with each throughput that has a spread as text (:func:`spread_cell`), and those
    columns (numbers still: right-aligned)."""
    if "benchmark" in frame.columns or not has_spread(frame):  # the samples view has no summary figures
        return frame, []
    shown = frame.copy()
    texts = []
    for column, cv in SPREADS.items():
        if column in frame.columns and cv in frame.columns and frame[cv].notna().any():
            shown[column] = [spread_cell(value, spread, bound)[0]
                             for value, spread in zip(frame[column], frame[cv], strict=True)]
            texts.append(column)
    return shown, texts


def reading_columns(frame: pd.DataFrame) -> list[str]:
    """Returns the columns a reader scans, in reading order (run, name, host, recipe, figures, duration and cost).

    Columns that are empty everywhere are left out.
    """
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
    return frame[list(columns or reading_columns(frame))].rename(columns=_label)


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
    "baseline_caveat", "inference_images_per_sec", "usd_per_million_train_images", "cost_to_accuracy_usd",
    "spread_flag",
]
_TEXT_WIDTH = 12  # a long text cell (a run's name) is cut to this, then grows into the width left over
_LISTED = 4  # columns a caption names before "…"


def rich_table(frame: pd.DataFrame, title: str, columns: Sequence[str] | None = None, *,
               spread_bound: float | None = None) -> FittedTable:
    """Returns the frame as a table for the terminal: the given columns (default: the reading columns, see
    :func:`display_frame`) under short labels, as many as the console is wide, and never a run id, host or
    state cut (see :class:`FittedTable`). A speed-up is shown only beside its caveat column, when it has one.

    Args:
        spread_bound: throughputs show their repeats' spread ("812 ±7.1%"), marked noisy above this bound (the
            default: :data:`orchestrator.report.metrics.SPREAD_BOUND`), and the caption states it.
    """
    bound = SPREAD_BOUND if spread_bound is None else spread_bound
    raw = list(columns) if columns else reading_columns(frame)
    priority = raw if columns else _priority(frame, raw)
    shown, texts = _with_spread(frame, bound)
    texts = [column for column in texts if column in raw]
    return FittedTable(shown[raw].rename(columns=_label), title, caption="all columns: --format csv or json",
                       priority=[_label(column) for column in priority],
                       names={_label(column): column for column in raw},
                       right=frozenset(_label(column) for column in texts),
                       together={_label(column): _label(partner) for column, partner in _SHOWN_WITH.items()
                                 if column in raw and partner in raw},
                       note=spread_note(bound) if texts else None)


def _priority(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Orders reading columns by how much a reader misses them: the row's identity first (run, host, state, the
    recipe keys that differ between rows), then its name and headline figures; provider, suite and duration last."""
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
    right: frozenset[str] = frozenset()  # labels of figures shown as text ("812 ±7.1%"), aligned as numbers
    together: Mapping[str, str] = field(default_factory=dict)  # label → a label it is never shown without
    note: str | None = None  # a sentence the caption always ends with (the spread bound)
    whole: frozenset[str] = frozenset()  # labels of text columns always shown and never cut, as those in KEEP

    def __post_init__(self) -> None:
        specs = [self.formats.get(str(column)) for column in self.shown.columns]
        self._cells = [[_formatted(value, spec) for value, spec in zip(row, specs, strict=True)]
                       for row in self.shown.itertuples(index=False)]
        self._numeric = [self.shown.iloc[:, i].dtype.kind in "fiu" or str(column) in self.right
                         for i, column in enumerate(self.shown.columns)]
        self._natural = [max([cell_len(str(column)), *(cell_len(row[i]) for row in self._cells)])
                         for i, column in enumerate(self.shown.columns)]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Table]:
        yield self.table(options.max_width)

    def table(self, width: int | None) -> Table:
        """Returns the rich Table for a console ``width`` columns wide (None: no limit)."""
        labels = [str(column) for column in self.shown.columns]
        keep = KEEP | self.whole
        wanted = [i for label in self.priority for i, name in enumerate(labels) if name == label]
        order = list(dict.fromkeys([*(i for i in range(len(labels)) if labels[i] in keep), *wanted,
                                    *range(len(labels))]))
        widths: dict[int, int] = {}
        used = 1  # the table's left edge; each column adds its width, two spaces of padding and a rule

        def short(i: int) -> int:  # text other than the kept columns (a long name) comes in short, grows after
            return self._natural[i] if labels[i] in keep or self._numeric[i] or width is None else \
                min(self._natural[i], max(_TEXT_WIDTH, cell_len(labels[i])))

        for i in order:
            if i in widths:
                continue
            partner = labels.index(self.together[labels[i]]) if self.together.get(labels[i]) in labels else None
            placed = [i] if partner is None or partner in widths else [i, partner]
            fits = sum(short(j) + 3 for j in placed)
            if labels[i] in keep or width is None or used + fits <= width:
                for j in placed:
                    widths[j] = short(j)
                used += fits
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
        if self.note:
            caption = f"{caption}. {self.note}" if caption else self.note  # one line: printable() joins lines
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
    return escape(printable(title))


def _formatted(value: object, spec: str | None) -> str:
    if spec is None or not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return format_cell(value)
    return format(value, spec)


def render_text(
    frame: pd.DataFrame, fmt: str, *, reading: bool = True, formats: Mapping[str, str] | None = None,
    columns: Sequence[str] | None = None, spread_bound: float | None = None,
) -> str:
    """Renders a frame as Markdown, CSV or JSON (records) text.

    Markdown shows the reading columns (:func:`display_frame`) unless ``reading`` is False (every column), each
    number formatted by ``formats`` (a spec per column) or :func:`format_cell`; with ``reading``, a throughput
    shows its repeats' spread ("812 ±7.1%", marked noisy above ``spread_bound``, by default
    :data:`orchestrator.report.metrics.SPREAD_BOUND`) and a line under the table states the bound. CSV is for
    spreadsheets: a text cell that would run as a formula is written as text (:func:`spreadsheet_safe`). JSON
    keeps every value as it is.

    Args:
        columns: only these columns (names as in CSV), in this order; see :func:`pick_columns`.
    """
    if fmt == "md":
        bound = SPREAD_BOUND if spread_bound is None else spread_bound
        spread, texts = _with_spread(frame, bound) if reading else (frame, [])
        shown = _display(spread, columns) if reading else frame[list(columns)] if columns else frame
        specs = formats or {}
        cells = shown.apply(lambda column: column.map(lambda value: _formatted(value, specs.get(str(column.name)))))
        # Formatted already: tabulate must not parse "0.270" back into 0.27.
        right = {_label(column) for column in texts} & set(shown.columns)
        align = ["right" if shown[column].dtype.kind in "fiu" or column in right else "left"
                 for column in shown.columns]
        table = str(cells.to_markdown(index=False, disable_numparse=True, colalign=align)) + "\n"
        return f"{table}\n{spread_note(bound)}\n" if right else table
    if columns:
        frame = frame[list(columns)]
    if fmt == "csv":
        return str(spreadsheet_frame(frame).to_csv(index=False))
    if fmt == "json":
        return str(frame.to_json(orient="records", indent=2)) + "\n"
    raise ValueError(f"format expected one of {FORMATS}, received {fmt!r}")
