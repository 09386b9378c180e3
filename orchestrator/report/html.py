"""One self-contained HTML report: the summary table and five charts, readable with no network.

Charting choice: hand-written inline SVG, generated here in Python. Considered and set aside: a vendored
JS library (uPlot ~50 kB, Chart.js ~200 kB minified) inlined into the file. SVG from Python wins here because

- the charts are a handful of scatters, lines and bars: a few hundred lines of code, no dependency to vendor,
  license or keep up to date, and a file a few kB larger than its data;
- the marks exist in the document as it is written (``<circle>``, ``<path>``, ``<rect>``), so they draw with
  JavaScript off, print, and are counted by a unit test on the string as well as in a browser's DOM;
- nothing is fetched: no CDN, no font, no ``http(s)://`` reference at all.

The data behind the charts and the table is embedded as JSON (``<script type="application/json"
id="report-data">``) for anyone who wants to script against the file; a small inline script only makes the
table sortable. Every string from the data (run names are user input) goes through :func:`html.escape`,
and the JSON is escaped so that it cannot close its ``<script>`` element.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# The charts, by their stable ``data-chart`` name, in page order.
CHARTS = ("throughput_vs_price", "images_per_dollar", "batch_size_curves", "accuracy_vs_time", "deployment")
# Ten colours a reader tells apart (Tableau 10, its grey swapped for near-black: grey is for "the others").
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#222222", "#bcbd22",
            "#17becf")
_OTHER = "#b0b0b0"
# A chart names at most this many series in its legend, one colour each; with more, the best of them keep their
# colour and the rest are drawn in grey as one legend entry ("and N more").
MAX_SERIES = len(_PALETTE)
MAX_BARS = 12  # a bar chart shows the best this many (the table and csv have every row)
TABLE_ROWS = 1000  # rows of the summary the page's table (and its embedded JSON) carry; csv has every row
_WIDTH, _HEIGHT = 560, 320
_MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 28, 12, 44
_TITLE_X = 12  # the rotated y-axis title's centre line
# Width of a character of tick (11px) and label (12px) text, rounded up: margins and cut labels are sized with it.
_TICK_PX, _LABEL_PX = 7.0, 7.5
_BAR_LABELS = 250  # the left part of a bar chart that holds each bar's label
_BAR_ROW = 22
_BIN_PX = 4  # the points of the grey "other" series are merged to one mark per this many pixels
_THROUGHPUT = "train_images_per_sec"


@dataclass
class Series:
    """One labelled set of points drawn in one colour."""

    label: str
    points: list[tuple[float, float]] = field(default_factory=list)
    line: bool = False  # join the points (sorted by x) with a path


@dataclass
class Chart:
    """What one chart shows; with no points it shows ``empty`` instead."""

    name: str  # the stable data-chart attribute
    title: str
    x_label: str
    y_label: str
    empty: str  # the sentence shown when there is nothing to draw, in the reader's words
    series: list[Series] = field(default_factory=list)
    bars: list[tuple[str, float]] = field(default_factory=list)  # (label, value): a bar chart when non-empty
    one_x: str = ""  # said when every point has the same x ("{x}" is that value), and the chart becomes bars
    log_x: bool = False  # x on a log scale (batch sizes double)
    higher_is_better: bool = True  # which series or bars are named first when there are too many for the page
    note: str = ""  # a sentence under the title: why bars, or what was left to the table
    other: list[tuple[float, float, int]] = field(default_factory=list)  # (x, y, points merged) of the grey series
    other_series: int = 0  # how many series the grey marks stand for

    def mark_count(self) -> int:
        """Returns how many marks (points, merged points or bars) the chart draws."""
        return len(self.bars) + sum(len(s.points) for s in self.series) + len(self.other)


def _e(text: object) -> str:
    from orchestrator.report.render import printable

    return html.escape(printable(text), quote=True)


def _finite(*values: object) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _number(value: float) -> str:
    """Formats a tooltip number: few digits, thousands separated."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _tick(value: float) -> str:
    """Formats an axis tick short enough to sit beside the axis: 850k, 1.5M, 0.25."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return _number(value)


def _domain(values: Sequence[float], from_zero: bool) -> tuple[float, float]:
    low, high = min(values), max(values)
    if from_zero:
        low = min(low, 0.0)
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        return low - (0 if from_zero and low == 0 else pad), high + pad
    # Pad both ends so that marks at the extremes are not cut by the frame (the zero baseline stays).
    pad = (high - low) * 0.05
    return (low if from_zero and low == 0 else low - pad), high + pad


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Returns about ``count`` round tick values within [low, high]."""
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _fit(text: str, pixels: float, char_px: float) -> str:
    """Cuts a label to what ``pixels`` hold (its full text is in the mark's tooltip)."""
    most = max(int(pixels / char_px), 4)
    return text if len(text) <= most else text[: most - 1] + "…"


@dataclass
class _Scale:
    """Maps data to the plot area, x on a linear or log2 scale."""

    low: float
    high: float
    start: float  # pixels
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        value = math.log2(value) if self.log else value
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


def _x_scale(chart: Chart, xs: Sequence[float], start: float, end: float) -> tuple[_Scale, list[float]]:
    """Returns the x scale and its ticks (data values): the measured values on a log scale when they are few."""
    log = chart.log_x and min(xs) > 0
    if not log:
        low, high = _domain(xs, from_zero=False)
        return _Scale(low, high, start, end), _ticks(low, high)
    measured = sorted(set(xs))
    low, high = _domain([math.log2(x) for x in measured], from_zero=False)
    spaced = all(b / a >= 1.5 for a, b in zip(measured, measured[1:], strict=False))
    ticks = measured if len(measured) <= 8 and spaced else \
        [2.0 ** p for p in range(math.ceil(low), math.floor(high) + 1)][:: max(1, round((high - low) / 6))]
    return _Scale(low, high, start, end, log=True), ticks


def _plot_svg(chart: Chart) -> tuple[str, int]:
    xs = [x for s in chart.series for x, _ in s.points] + [x for x, _, _ in chart.other]
    ys = [y for s in chart.series for _, y in s.points] + [y for _, y, _ in chart.other]
    y_low, y_high = _domain(ys, from_zero=True)
    y_ticks = _ticks(y_low, y_high)
    # The y ticks' longest label sets the left margin, so that no tick runs into the axis title or off the page.
    left = _TITLE_X + 10 + 6 + max(len(_tick(t)) for t in y_ticks) * _TICK_PX
    right, top, bottom = _WIDTH - _MARGIN_RIGHT, _MARGIN_TOP, _HEIGHT - _MARGIN_BOTTOM
    x_scale, x_ticks = _x_scale(chart, xs, left, right)
    y_scale = _Scale(y_low, y_high, bottom, top)

    parts = [f'<line class="axis" x1="{left:.0f}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
             f'<line class="axis" x1="{left:.0f}" y1="{top}" x2="{left:.0f}" y2="{bottom}"/>']
    for tick in y_ticks:
        y = y_scale(tick)
        parts.append(f'<line class="grid" x1="{left:.0f}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>'
                     f'<text class="tick" x="{left - 6:.0f}" y="{y + 4:.1f}" text-anchor="end">{_tick(tick)}</text>')
    for tick in x_ticks:
        parts.append(f'<text class="tick" x="{x_scale(tick):.1f}" y="{bottom + 16}" text-anchor="middle">'
                     f"{_tick(tick)}</text>")
    parts.append(f'<text class="label" x="{(left + right) / 2:.0f}" y="{_HEIGHT - 8}" text-anchor="middle">'
                 f"{_e(_fit(chart.x_label, right - left, _LABEL_PX))}</text>")
    parts.append(f'<text class="label" transform="translate({_TITLE_X} {(top + bottom) / 2:.0f}) rotate(-90)" '
                 f'text-anchor="middle" dominant-baseline="central">'
                 f"{_e(_fit(chart.y_label, bottom - top, _LABEL_PX))}</text>")
    for x, y, count in chart.other:
        parts.append(f'<circle class="mark other" cx="{x_scale(x):.1f}" cy="{y_scale(y):.1f}" r="3" fill="{_OTHER}">'
                     f"<title>{count:,} point(s) of the grey series near {_e(chart.x_label)} {_number(x)}, "
                     f"{_e(chart.y_label)} {_number(y)}</title></circle>")
    for i, series in enumerate(chart.series):
        colour = _PALETTE[i % len(_PALETTE)]
        points = sorted(series.points) if series.line else series.points
        placed = [(x_scale(x), y_scale(y)) for x, y in points]
        if series.line and len(placed) > 1:
            path = " ".join(f"{'M' if j == 0 else 'L'}{px:.1f},{py:.1f}" for j, (px, py) in enumerate(placed))
            parts.append(f'<path class="line" d="{path}" stroke="{colour}"/>')
        for (x, y), (px, py) in zip(points, placed, strict=True):
            parts.append(f'<circle class="mark" cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}">'
                         f"<title>{_e(series.label)}: {_e(chart.x_label)} {_number(x)}, "
                         f"{_e(chart.y_label)} {_number(y)}</title></circle>")
    return "".join(parts), _HEIGHT


def _bars_svg(chart: Chart) -> tuple[str, int]:
    """Horizontal bars, each labelled beside it (no legend to match colours against)."""
    left, right = _BAR_LABELS, _WIDTH - _MARGIN_RIGHT
    top = _MARGIN_TOP
    bottom = top + _BAR_ROW * len(chart.bars)
    height = bottom + _MARGIN_BOTTOM
    low, high = _domain([value for _, value in chart.bars], from_zero=True)
    scale = _Scale(low, high, left, right)
    parts = [f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>',
             f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>']
    ticks = _ticks(low, high, count=4)
    for tick in ticks:
        x = scale(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>'
                     f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{_tick(tick)}</text>')
    parts.append(f'<text class="label" x="{(left + right) / 2:.0f}" y="{height - 8}" text-anchor="middle">'
                 f"{_e(_fit(chart.y_label, right - left, _LABEL_PX))}</text>")
    zero = scale(max(low, 0.0))
    for i, (label, value) in enumerate(chart.bars):
        y = top + i * _BAR_ROW
        end = scale(value)
        parts.append(f'<text class="bar-label" x="{left - 6}" y="{y + _BAR_ROW / 2 + 4:.1f}" text-anchor="end">'
                     f"{_e(_fit(label, left - 12, _TICK_PX))}</text>"
                     f'<rect class="mark" x="{min(zero, end):.1f}" y="{y + 3:.1f}" width="{abs(end - zero):.1f}" '
                     f'height="{_BAR_ROW - 6}" fill="{_PALETTE[0]}">'
                     f"<title>{_e(label)}: {_number(value)}</title></rect>")
    return "".join(parts), height


def _figure(chart: Chart) -> str:
    head = f'<figure class="chart" data-chart="{_e(chart.name)}" data-points="{chart.mark_count()}">' \
           f"<figcaption>{_e(chart.title)}</figcaption>"
    if not chart.mark_count():
        return f'{head}<p class="empty">{_e(chart.empty)}</p></figure>'
    note = f'<p class="note">{_e(chart.note)}</p>' if chart.note else ""
    body, height = _bars_svg(chart) if chart.bars else _plot_svg(chart)
    svg = f'<svg viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{_e(chart.title)}">{body}</svg>'
    if chart.bars:  # each bar is labelled where it is drawn
        return f"{head}{note}{svg}</figure>"
    legend = [(colour, s.label) for colour, s in zip(_PALETTE, chart.series, strict=False)]
    if chart.other_series:
        legend.append((_OTHER, f"and {chart.other_series:,} more (grey; the {len(chart.series)} named have the "
                               f"{'highest' if chart.higher_is_better else 'lowest'} {chart.y_label})"))
    items = "".join(f'<li><span class="swatch" style="background:{colour}"></span>{_e(label)}</li>'
                    for colour, label in legend)
    return f'{head}{note}{svg}<ul class="legend">{items}</ul></figure>'


def _settle(chart: Chart) -> Chart:
    """Makes a chart readable whatever the data: bars when every point has the same x (no curve to draw), the
    best :data:`MAX_BARS` bars, and at most :data:`MAX_SERIES` series in colour with the rest merged in grey."""
    xs = {x for s in chart.series for x, _ in s.points}
    if len(xs) == 1 and chart.one_x:
        best = max if chart.higher_is_better else min
        chart.bars = [(s.label, best(y for _, y in s.points)) for s in chart.series if s.points]
        chart.note = chart.one_x.format(x=_number(next(iter(xs))))
        chart.series = []
    if chart.bars:
        chart.bars.sort(key=lambda bar: -bar[1] if chart.higher_is_better else bar[1])
        if len(chart.bars) > MAX_BARS:
            chart.note = " ".join(filter(None, [
                chart.note, f"The {MAX_BARS} {'highest' if chart.higher_is_better else 'lowest'} of "
                            f"{len(chart.bars):,}; every row is in the table and in --format csv."]))
            chart.bars = chart.bars[:MAX_BARS]
    if len(chart.series) > MAX_SERIES:
        def rank(series: Series) -> float:
            values = [y for _, y in series.points]
            return -max(values) if chart.higher_is_better else min(values)

        ranked = sorted(chart.series, key=rank)
        chart.series, rest = ranked[: MAX_SERIES - 1], ranked[MAX_SERIES - 1:]
        chart.other_series = len(rest)
        chart.other = _binned(chart, [point for series in rest for point in series.points])
    return chart


def _binned(chart: Chart, points: list[tuple[float, float]]) -> list[tuple[float, float, int]]:
    """Merges points that would be drawn within a few pixels of each other into one (their mean), with a count."""
    every = points + [point for s in chart.series for point in s.points]
    log = chart.log_x and min(x for x, _ in every) > 0
    def x_of(x: float) -> float:
        return math.log2(x) if log else x
    x_low, x_high = _domain([x_of(x) for x, _ in every], from_zero=False)
    y_low, y_high = _domain([y for _, y in every], from_zero=True)
    columns, rows = (_WIDTH - 80) / _BIN_PX, (_HEIGHT - _MARGIN_TOP - _MARGIN_BOTTOM) / _BIN_PX
    cells: dict[tuple[int, int], list[float]] = {}
    for x, y in points:
        key = (int((x_of(x) - x_low) / (x_high - x_low) * columns), int((y - y_low) / (y_high - y_low) * rows))
        cell = cells.setdefault(key, [0.0, 0.0, 0.0])
        cell[0] += x
        cell[1] += y
        cell[2] += 1
    return [(sx / n, sy / n, int(n)) for sx, sy, n in cells.values()]


def _run_labels(frame: pd.DataFrame) -> dict[str, str]:
    """Names each run the same way in every legend: its name (control characters removed), else its id; a name
    that several runs share gets the run id after it, so that no two runs read the same."""
    from orchestrator.report.render import printable

    if frame.empty or "run_id" not in frame.columns:
        return {}
    runs = frame.drop_duplicates("run_id")
    names = runs["name"] if "name" in runs.columns else [None] * len(runs)
    labels = {str(run_id): printable(name).strip() if _present(name) and printable(name).strip() else str(run_id)
              for run_id, name in zip(runs["run_id"], names, strict=True)}
    taken: dict[str, int] = {}
    for label in labels.values():
        taken[label] = taken.get(label, 0) + 1
    return {run_id: f"{label} ({run_id})" if taken[label] > 1 and label != run_id else label
            for run_id, label in labels.items()}


def _recipe_label(row: pd.Series, run_labels: dict[str, str], keys: Sequence[str]) -> str:
    from orchestrator.report.render import printable

    recipe = [f"{key}={printable(row[key])}" for key in keys if key in row.index and _present(row[key])]
    return " ".join([run_labels.get(str(row["run_id"]), str(row["run_id"])), *recipe])


def _varying(frame: pd.DataFrame) -> list[str]:
    """The recipe keys whose values differ between the rows: the ones that tell two marks of a run apart."""
    from orchestrator.report.frame import VARIANT_KEYS

    return [key for key in VARIANT_KEYS if key in frame.columns and frame[key].astype(str).nunique() > 1]


def _present(value: object) -> bool:
    if value is None:
        return False
    try:
        return not bool(value != value)  # NaN, pd.NA
    except TypeError:  # pd.NA in a boolean context
        return False


def _price_per_hour(row: pd.Series) -> float | None:
    """The row's price in $/h (a total row's: its hosts' summed): ``price_per_hour`` when the frame has it
    (billed amount over billed hours), else the row's cost over the run's duration; None for a run that was free
    or not priced."""
    listed = row.get("price_per_hour")
    if isinstance(listed, int | float) and math.isfinite(listed) and listed > 0:
        return float(listed)
    cost, seconds = row.get("cost_usd"), row.get("duration_s")
    if not _finite(cost, seconds) or not cost or not seconds or cost <= 0 or seconds <= 0:
        return None
    return float(cost) * 3600 / float(seconds)


def build_charts(samples: pd.DataFrame, summary: pd.DataFrame) -> list[Chart]:
    """Returns the report's five charts from the samples and summary frames (see ``frame.py``).

    A run over several hosts is plotted once, by its total rows (throughput summed, prices summed); its
    hosts' own rows are in the table. However many runs there are, each chart stays readable (see
    :func:`_settle`): the page's size follows what a chart can show, not the number of samples.
    """
    from orchestrator.report.frame import stands_for_run

    summary = summary[stands_for_run(summary)]
    run_labels = _run_labels(summary)
    price = Chart("throughput_vs_price", "Training throughput against price", "$ per hour", "images/s",
                  "no run here has both a price and a training throughput (run the throughput suite on a priced "
                  "machine, or give --price-per-hour)",
                  one_x="Every run here costs ${x} an hour, so their throughputs are compared as bars.")
    per_dollar = Chart("images_per_dollar", "Training images per dollar", "run and recipe", "images per $",
                       "no run here has both a price and a training throughput (run the throughput suite on a "
                       "priced machine, or give --price-per-hour)")
    batch = Chart("batch_size_curves", "Training throughput by batch size", "batch size", "images/s",
                  "no training throughput at a known batch size in these runs (run the throughput suite)",
                  one_x="Every run here measured batch size {x} only, so there is no curve to draw: one bar per "
                        "model and run.", log_x=True)
    accuracy = Chart("accuracy_vs_time", "Test accuracy against training time", "training seconds", "accuracy",
                     "no per-epoch accuracy curve in these runs (run the accuracy suite)",
                     one_x="Every accuracy here was measured at {x} training seconds, so there is no curve to draw.")
    deployment = Chart("deployment", "Deployment trade-offs: model size against latency", "model size (MB, gzip)",
                       "latency ms (p50)", "no model size and latency measurements in these runs (run the deploy "
                       "suite)", one_x="Every model here is {x} MB (gzip), so their latencies are compared as bars.",
                       higher_is_better=False)
    if _THROUGHPUT in summary.columns:
        keys = _varying(summary)
        by_model: dict[tuple[str, str], Series] = {}
        for _, row in summary.iterrows():
            throughput = row[_THROUGHPUT]
            if not _finite(throughput):
                continue
            label = _recipe_label(row, run_labels, keys)
            hourly = _price_per_hour(row)
            if hourly is not None:
                price.series.append(Series(label, [(hourly, float(throughput))]))
                per_dollar.bars.append((label, float(throughput) * 3600 / hourly))
            if "batch_size" in row.index and _present(row["batch_size"]):
                model = row["model"] if "model" in row.index and _present(row["model"]) else "-"
                run_id = str(row["run_id"])
                series = by_model.setdefault((str(model), run_id), Series(
                    f"{model} on {run_labels.get(run_id, run_id)}", line=True))
                series.points.append((float(row["batch_size"]), float(throughput)))
        batch.series = list(by_model.values())
    accuracy.series = _curves(samples)
    deployment.series = _deployment(summary, run_labels)
    return [_settle(chart) for chart in (price, per_dollar, batch, accuracy, deployment)]


def _curves(samples: pd.DataFrame) -> list[Series]:
    import pandas as pd

    if samples.empty or "elapsed_s" not in samples.columns:
        return []
    points = samples[(samples["benchmark"] == "train_curve") & (samples["metric"] == "accuracy")]
    points = points[points["elapsed_s"].notna() & points["value"].notna()]
    run_labels = _run_labels(points)
    # Each host of a multi-host run trained on its own: one curve per host, named after it.
    several = points.groupby("run_id")["host"].transform("nunique") > 1 if "host" in points.columns \
        else pd.Series(False, index=points.index)
    curves: dict[tuple[str, str, str], Series] = {}
    for (_, row), by_host in zip(points.iterrows(), several, strict=True):
        if not _finite(row["elapsed_s"], row["value"]):
            continue
        model = row["model"] if "model" in row.index and _present(row["model"]) else None
        run_id = str(row["run_id"])
        host = str(row["host"]) if by_host else ""
        run = f"{run_labels.get(run_id, run_id)} {host}" if by_host else run_labels.get(run_id, run_id)
        label = f"{run} {model}" if model else run
        curves.setdefault((run_id, host, str(model)), Series(label, line=True)).points.append(
            (float(row["elapsed_s"]), float(row["value"])))
    return list(curves.values())


def _deployment(summary: pd.DataFrame, run_labels: dict[str, str]) -> list[Series]:
    sizes = [c for c in summary.columns if c.endswith(("model_bytes_gzip", "model_bytes"))]
    latencies = [c for c in summary.columns if c.endswith("latency_ms_p50")]
    if not sizes or not latencies:
        return []
    keys = _varying(summary)
    series = []
    for _, row in summary.iterrows():
        size = next((row[c] for c in sizes if _finite(row[c])), None)
        latency = next((row[c] for c in latencies if _finite(row[c])), None)
        if size is not None and latency is not None:
            series.append(Series(_recipe_label(row, run_labels, keys), [(float(size) / 1e6, float(latency))]))
    return series


def _table(summary: pd.DataFrame, spread_bound: float) -> str:
    """The summary's reading columns as a sortable table, at most :data:`TABLE_ROWS` rows of it; a throughput
    with its repeats' spread ("812 ±7.1%"), a noisy one (spread above ``spread_bound``) of class ``noisy`` and
    titled with why."""
    from orchestrator.report.metrics import SPREADS, bound_text, spread_text
    from orchestrator.report.render import _reading_columns, display_frame, format_cell, spread_cell

    rows_shown = summary.iloc[:TABLE_ROWS]
    shown = display_frame(rows_shown)
    raw = _reading_columns(rows_shown)  # display_frame's columns, before their labels
    spreads = [rows_shown[SPREADS[c]].tolist() if c in SPREADS and SPREADS[c] in rows_shown.columns else None
               for c in raw]
    head = "".join(f"<th>{_e(column)}</th>" for column in shown.columns)
    numeric = [shown[c].dtype.kind in "fiu" for c in shown.columns]
    rows = []
    for position, record in enumerate(shown.itertuples(index=False)):
        cells = []
        for value, is_number, spread in zip(record, numeric, spreads, strict=True):
            sort_key = f' data-sort="{value!r}"' if is_number and _finite(value) else ""
            text, noisy, title = format_cell(value), False, ""
            if spread is not None:
                text, noisy = spread_cell(value, spread[position], spread_bound)
                if _finite(spread[position]):
                    title = f' title="repeats spread {_e(spread_text(spread[position]))} (coefficient of variation)' \
                            f'{_e(" > " + bound_text(spread_bound)) if noisy else ""}"'
            kind = ("num" if is_number else "text") + (" noisy" if noisy else "")
            cells.append(f'<td class="{kind}"{sort_key}{title}>{_e(text)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="summary" data-table="summary"><thead><tr>{head}</tr></thead>' \
           f"<tbody>{''.join(rows)}</tbody></table>"


def _json_for_script(data: object) -> str:
    """JSON that cannot end its <script> element early: <, > and & become \\u escapes."""
    text = json.dumps(data, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _data(summary: pd.DataFrame, charts: Iterable[Chart]) -> dict[str, object]:
    """What the page shows, as data: the table's rows (every column) and each chart's marks."""
    records = json.loads(summary.iloc[:TABLE_ROWS].to_json(orient="records", date_format="iso"))
    return {
        "summary": records,
        "summary_rows": len(summary),
        "charts": {
            chart.name: {"bars": chart.bars, "series": [{"label": s.label, "points": s.points} for s in chart.series],
                         "other": {"series": chart.other_series, "points": chart.other}}
            for chart in charts
        },
    }


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px;margin:16px 0}
figure.chart{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}
svg{width:100%;height:auto;display:block}
.axis{stroke:#555;stroke-width:1}.grid{stroke:#eee;stroke-width:1}
.tick{font-size:11px;fill:#555}.label{font-size:12px;fill:#333}
.line{fill:none;stroke-width:2}
circle.mark{stroke:#fff;stroke-width:1}
.legend{list-style:none;padding:0;margin:4px 0 0;font-size:12px;display:flex;flex-wrap:wrap;gap:4px 12px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.empty{color:#777;font-style:italic;padding:24px 0;text-align:center}
.note{color:#555;font-size:12px;margin:0 0 4px}
.bar-label{font-size:11px;fill:#333}
circle.other{stroke:none;opacity:.7}
table.summary{border-collapse:collapse;font-size:13px}
table.summary th,table.summary td{border-bottom:1px solid #ddd;padding:3px 8px;white-space:nowrap}
table.summary th{cursor:pointer;text-align:left;background:#f6f6f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.noisy{color:#bc4c00;font-weight:600}
"""

# Sorts the summary table on a header click; numbers by their data-sort value, text as text.
_JS = """
(function () {
  var table = document.querySelector('table.summary');
  if (!table) { return; }
  var headers = table.querySelectorAll('th');
  headers.forEach(function (th, column) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var ascending = th.getAttribute('data-order') !== 'asc';
      rows.sort(function (a, b) {
        var x = a.cells[column], y = b.cells[column];
        var nx = parseFloat(x.getAttribute('data-sort')), ny = parseFloat(y.getAttribute('data-sort'));
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.textContent.localeCompare(y.textContent);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      th.setAttribute('data-order', ascending ? 'asc' : 'desc');
    });
  });
  document.body.setAttribute('data-ready', 'true');
})();
"""


def render_html(samples: pd.DataFrame, summary: pd.DataFrame, title: str = "Orchestrate report", *,
                spread_bound: float | None = None) -> str:
    """Returns the whole report as one HTML document that needs no network to open.

    Args:
        samples: the samples view (one row per sample), for the accuracy curves.
        summary: the summary view (one row per run, recipe and host, and a multi-host run's totals), for the
            table and the other charts.
        title: the page title.
        spread_bound: a throughput whose repeats spread more than this is marked noisy in the table (default:
            :data:`orchestrator.report.metrics.SPREAD_BOUND`); a note over the table states it.
    """
    from orchestrator.report.metrics import SPREAD_BOUND, spread_note
    from orchestrator.report.render import has_spread

    bound = SPREAD_BOUND if spread_bound is None else spread_bound
    note = f'<p class="note spread">{_e(spread_note(bound))}</p>' if has_spread(summary) else ""
    charts = build_charts(samples, summary)
    runs = summary["run_id"].nunique() if "run_id" in summary.columns else 0
    cut = f"<p class=\"note\">The table shows the first {TABLE_ROWS:,} of {len(summary):,} rows; every row: " \
          "<code>orchestrate report --format csv</code>.</p>" if len(summary) > TABLE_ROWS else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>{runs} run(s), {len(summary)} row(s). Hover a mark for its values; "
        "click a column header to sort.</p>"
        f"<div class=\"charts\">{''.join(_figure(chart) for chart in charts)}</div>"
        f"<h2>Summary</h2>{cut}{note}{_table(summary, bound)}"
        f"<script type=\"application/json\" id=\"report-data\">{_json_for_script(_data(summary, charts))}</script>"
        f"<script>{_JS}</script></body></html>\n"
    )
