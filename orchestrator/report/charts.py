"""Charts as inline SVG: the chart model (:class:`Chart`, :class:`Series`), how a chart is kept readable whatever
the data (:func:`settle`), and its drawing as a ``<figure>`` (:func:`figure_html`).

Charting choice: hand-written inline SVG, generated here in Python. Considered and set aside: a vendored
JS library (uPlot ~50 kB, Chart.js ~200 kB minified) inlined into the file. SVG from Python wins here because

- the charts are a handful of scatters, lines and bars: a few hundred lines of code, no dependency to vendor,
  license or keep up to date, and a file a few kB larger than its data;
- the marks exist in the document as it is written (``<circle>``, ``<path>``, ``<rect>``), so they draw with
  JavaScript off, print, and are counted by a unit test on the string as well as in a browser's DOM;
- nothing is fetched: no CDN, no font, no ``http(s)://`` reference at all.

Every string drawn (run names are user input) goes through :func:`html_text`. The pages that hold the charts are
:mod:`orchestrator.report.html` (runs) and :mod:`orchestrator.report.campaign` (a campaign).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.report.render import printable

# Ten colours a reader tells apart (Tableau 10, its grey swapped for near-black: grey is for "the others").
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#222222", "#bcbd22",
            "#17becf")
_OTHER = "#b0b0b0"
# A chart names at most this many series in its legend, one colour each; with more, the best of them keep their
# colour and the rest are drawn in grey as one legend entry ("and N more").
MAX_SERIES = len(_PALETTE)
MAX_BARS = 12  # a bar chart shows the best this many (the table and csv have every row)
_WIDTH, _HEIGHT = 560, 320
_MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 28, 12, 44
_TITLE_X = 12  # the rotated y-axis title's centre line
# Width of a character of tick (11px) and label (12px) text, rounded up: margins and cut labels are sized with it.
TICK_PX, LABEL_PX = 7.0, 7.5
_BAR_LABELS = 250  # the left part of a bar chart that holds each bar's label
_BAR_ROW = 22
_BIN_PX = 4  # the points of the grey "other" series are merged to one mark per this many pixels


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


def html_text(text: object) -> str:
    """Returns text as a page shows it: control characters removed (:func:`~orchestrator.report.render.printable`),
    ``<``, ``>``, ``&`` and quotes escaped."""
    return html.escape(printable(text), quote=True)


def finite(*values: object) -> bool:
    """Returns whether every value is a finite number (not a bool, NaN, inf or missing)."""
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def present(value: object) -> bool:
    """Returns whether a value is there: not None, NaN or pandas' NA."""
    if value is None:
        return False
    try:
        return not bool(value != value)  # NaN, pd.NA
    except TypeError:  # pd.NA in a boolean context
        return False


def number_text(value: float) -> str:
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
    return number_text(value)


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


def fit_label(text: str, pixels: float, char_px: float) -> str:
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
    left = _TITLE_X + 10 + 6 + max(len(_tick(t)) for t in y_ticks) * TICK_PX
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
                 f"{html_text(fit_label(chart.x_label, right - left, LABEL_PX))}</text>")
    parts.append(f'<text class="label" transform="translate({_TITLE_X} {(top + bottom) / 2:.0f}) rotate(-90)" '
                 f'text-anchor="middle" dominant-baseline="central">'
                 f"{html_text(fit_label(chart.y_label, bottom - top, LABEL_PX))}</text>")
    for x, y, count in chart.other:
        parts.append(f'<circle class="mark other" cx="{x_scale(x):.1f}" cy="{y_scale(y):.1f}" r="3" fill="{_OTHER}">'
                     f"<title>{count:,} point(s) of the grey series near {html_text(chart.x_label)} {number_text(x)}, "
                     f"{html_text(chart.y_label)} {number_text(y)}</title></circle>")
    for i, series in enumerate(chart.series):
        colour = _PALETTE[i % len(_PALETTE)]
        points = sorted(series.points) if series.line else series.points
        placed = [(x_scale(x), y_scale(y)) for x, y in points]
        if series.line and len(placed) > 1:
            path = " ".join(f"{'M' if j == 0 else 'L'}{px:.1f},{py:.1f}" for j, (px, py) in enumerate(placed))
            parts.append(f'<path class="line" d="{path}" stroke="{colour}"/>')
        for (x, y), (px, py) in zip(points, placed, strict=True):
            parts.append(f'<circle class="mark" cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}">'
                         f"<title>{html_text(series.label)}: {html_text(chart.x_label)} {number_text(x)}, "
                         f"{html_text(chart.y_label)} {number_text(y)}</title></circle>")
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
                 f"{html_text(fit_label(chart.y_label, right - left, LABEL_PX))}</text>")
    zero = scale(max(low, 0.0))
    for i, (label, value) in enumerate(chart.bars):
        y = top + i * _BAR_ROW
        end = scale(value)
        parts.append(f'<text class="bar-label" x="{left - 6}" y="{y + _BAR_ROW / 2 + 4:.1f}" text-anchor="end">'
                     f"{html_text(fit_label(label, left - 12, TICK_PX))}</text>"
                     f'<rect class="mark" x="{min(zero, end):.1f}" y="{y + 3:.1f}" width="{abs(end - zero):.1f}" '
                     f'height="{_BAR_ROW - 6}" fill="{_PALETTE[0]}">'
                     f"<title>{html_text(label)}: {number_text(value)}</title></rect>")
    return "".join(parts), height


def figure_html(chart: Chart) -> str:
    """Returns the chart as a ``<figure>``: its title, note, SVG and legend (a bar chart labels its bars instead), or
    its ``empty`` sentence when it has no marks."""
    head = f'<figure class="chart" data-chart="{html_text(chart.name)}" data-points="{chart.mark_count()}">' \
           f"<figcaption>{html_text(chart.title)}</figcaption>"
    if not chart.mark_count():
        return f'{head}<p class="empty">{html_text(chart.empty)}</p></figure>'
    note = f'<p class="note">{html_text(chart.note)}</p>' if chart.note else ""
    body, height = _bars_svg(chart) if chart.bars else _plot_svg(chart)
    svg = f'<svg viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{html_text(chart.title)}">{body}</svg>'
    if chart.bars:  # each bar is labelled where it is drawn
        return f"{head}{note}{svg}</figure>"
    legend = [(colour, s.label) for colour, s in zip(_PALETTE, chart.series, strict=False)]
    if chart.other_series:
        legend.append((_OTHER, f"and {chart.other_series:,} more (grey; the {len(chart.series)} named have the "
                               f"{'highest' if chart.higher_is_better else 'lowest'} {chart.y_label})"))
    items = "".join(f'<li><span class="swatch" style="background:{colour}"></span>{html_text(label)}</li>'
                    for colour, label in legend)
    return f'{head}{note}{svg}<ul class="legend">{items}</ul></figure>'


def settle(chart: Chart) -> Chart:
    """Makes a chart readable whatever the data: bars when every point has the same x (no curve to draw), the
    best :data:`MAX_BARS` bars, and at most :data:`MAX_SERIES` series in colour with the rest merged in grey."""
    xs = {x for s in chart.series for x, _ in s.points}
    if len(xs) == 1 and chart.one_x:
        best = max if chart.higher_is_better else min
        chart.bars = [(s.label, best(y for _, y in s.points)) for s in chart.series if s.points]
        chart.note = chart.one_x.format(x=number_text(next(iter(xs))))
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
