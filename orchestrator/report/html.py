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
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_WIDTH, _HEIGHT = 560, 320
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 64, 16, 12, 44
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
    empty: str  # the sentence shown when there is nothing to draw
    series: list[Series] = field(default_factory=list)
    bars: list[tuple[str, float]] = field(default_factory=list)  # (label, value): a bar chart when non-empty

    def mark_count(self) -> int:
        """Returns how many marks (points or bars) the chart draws."""
        return len(self.bars) + sum(len(s.points) for s in self.series)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _finite(*values: object) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _number(value: float) -> str:
    """Formats an axis or tooltip number: few digits, thousands separated."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


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


def _axes(x_range: tuple[float, float] | None, y_range: tuple[float, float], x_label: str, y_label: str) -> str:
    left, right = _MARGIN_LEFT, _WIDTH - _MARGIN_RIGHT
    top, bottom = _MARGIN_TOP, _HEIGHT - _MARGIN_BOTTOM
    parts = [f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
             f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>']
    y_low, y_high = y_range
    for tick in _ticks(y_low, y_high):
        y = bottom - (tick - y_low) / (y_high - y_low) * (bottom - top)
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>'
                     f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(tick)}</text>')
    if x_range is not None:
        x_low, x_high = x_range
        for tick in _ticks(x_low, x_high):
            x = left + (tick - x_low) / (x_high - x_low) * (right - left)
            parts.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">'
                         f'{_number(tick)}</text>')
    parts.append(f'<text class="label" x="{(left + right) / 2:.0f}" y="{_HEIGHT - 8}" text-anchor="middle">'
                 f'{_e(x_label)}</text>')
    parts.append(f'<text class="label" transform="translate(14 {(top + bottom) / 2:.0f}) rotate(-90)" '
                 f'text-anchor="middle">{_e(y_label)}</text>')
    return "".join(parts)


def _plot_svg(chart: Chart) -> str:
    xs = [x for s in chart.series for x, _ in s.points]
    ys = [y for s in chart.series for _, y in s.points]
    x_low, x_high = _domain(xs, from_zero=False)
    y_low, y_high = _domain(ys, from_zero=True)
    left, right = _MARGIN_LEFT, _WIDTH - _MARGIN_RIGHT
    top, bottom = _MARGIN_TOP, _HEIGHT - _MARGIN_BOTTOM

    def place(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_low) / (x_high - x_low) * (right - left),
                bottom - (y - y_low) / (y_high - y_low) * (bottom - top))

    parts = [_axes((x_low, x_high), (y_low, y_high), chart.x_label, chart.y_label)]
    for i, series in enumerate(chart.series):
        colour = _PALETTE[i % len(_PALETTE)]
        points = sorted(series.points) if series.line else series.points
        placed = [place(x, y) for x, y in points]
        if series.line and len(placed) > 1:
            path = " ".join(f"{'M' if j == 0 else 'L'}{px:.1f},{py:.1f}" for j, (px, py) in enumerate(placed))
            parts.append(f'<path class="line" d="{path}" stroke="{colour}"/>')
        for (x, y), (px, py) in zip(points, placed, strict=True):
            parts.append(f'<circle class="mark" cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}">'
                         f'<title>{_e(series.label)}: {_e(chart.x_label)} {_number(x)}, '
                         f'{_e(chart.y_label)} {_number(y)}</title></circle>')
    return "".join(parts)


def _bars_svg(chart: Chart) -> str:
    left, right = _MARGIN_LEFT, _WIDTH - _MARGIN_RIGHT
    top, bottom = _MARGIN_TOP, _HEIGHT - _MARGIN_BOTTOM
    y_low, y_high = _domain([value for _, value in chart.bars], from_zero=True)
    parts = [_axes(None, (y_low, y_high), chart.x_label, chart.y_label)]
    slot = (right - left) / len(chart.bars)
    for i, (label, value) in enumerate(chart.bars):
        height = (value - y_low) / (y_high - y_low) * (bottom - top)
        x = left + i * slot + slot * 0.15
        parts.append(f'<rect class="mark" x="{x:.1f}" y="{bottom - height:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{height:.1f}" fill="{_PALETTE[i % len(_PALETTE)]}">'
                     f'<title>{_e(label)}: {_number(value)}</title></rect>')
    return "".join(parts)


def _figure(chart: Chart) -> str:
    head = f'<figure class="chart" data-chart="{_e(chart.name)}" data-points="{chart.mark_count()}">' \
           f"<figcaption>{_e(chart.title)}</figcaption>"
    if not chart.mark_count():
        return f'{head}<p class="empty">{_e(chart.empty)}</p></figure>'
    body = _bars_svg(chart) if chart.bars else _plot_svg(chart)
    labels = [label for label, _ in chart.bars] if chart.bars else [s.label for s in chart.series]
    legend = "".join(f'<li><span class="swatch" style="background:{_PALETTE[i % len(_PALETTE)]}"></span>'
                     f"{_e(label)}</li>" for i, label in enumerate(labels))
    return (f'{head}<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{_e(chart.title)}">{body}</svg>'
            f'<ul class="legend">{legend}</ul></figure>')


def _variant_label(row: pd.Series) -> str:
    from orchestrator.report.frame import VARIANT_KEYS

    recipe = [f"{key}={row[key]}" for key in VARIANT_KEYS[:8] if key in row.index and _present(row[key])]
    return " ".join([_run_label(row), *recipe])


def _run_label(row: pd.Series) -> str:
    """Names a run the same way in every legend: its name (user input, escaped where written), else its id."""
    return str(row["name"] if "name" in row.index and _present(row["name"]) else row["run_id"])


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
    hosts' own rows are in the table.
    """
    from orchestrator.report.frame import stands_for_run

    summary = summary[stands_for_run(summary)]
    price = Chart("throughput_vs_price", "Training throughput against price", "$ per hour", "images/s",
                  "no priced runs with a training throughput")
    per_dollar = Chart("images_per_dollar", "Training images per dollar", "run and recipe", "images per $",
                       "no priced runs with a training throughput")
    batch = Chart("batch_size_curves", "Training throughput by batch size", "batch size", "images/s",
                  "no training throughput with a batch size")
    accuracy = Chart("accuracy_vs_time", "Test accuracy against training time", "training seconds", "accuracy",
                     "no train_curve samples with elapsed_s")
    deployment = Chart("deployment", "Deployment trade-offs: model size against latency", "model size (MB, gzip)",
                       "latency ms (p50)", "no deployment samples")
    if _THROUGHPUT in summary.columns:
        by_model: dict[str, Series] = {}
        for _, row in summary.iterrows():
            throughput = row[_THROUGHPUT]
            if not _finite(throughput):
                continue
            label = _variant_label(row)
            hourly = _price_per_hour(row)
            if hourly is not None:
                price.series.append(Series(label, [(hourly, float(throughput))]))
                per_dollar.bars.append((label, float(throughput) * 3600 / hourly))
            if "batch_size" in row.index and _present(row["batch_size"]):
                model = row["model"] if "model" in row.index and _present(row["model"]) else "-"
                key = f"{model} on {_run_label(row)}"
                by_model.setdefault(key, Series(key, line=True)).points.append(
                    (float(row["batch_size"]), float(throughput)))
        batch.series = list(by_model.values())
    accuracy.series = _curves(samples)
    deployment.series = _deployment(summary)
    return [price, per_dollar, batch, accuracy, deployment]


def _curves(samples: pd.DataFrame) -> list[Series]:
    import pandas as pd

    if samples.empty or "elapsed_s" not in samples.columns:
        return []
    points = samples[(samples["benchmark"] == "train_curve") & (samples["metric"] == "accuracy")]
    # Each host of a multi-host run trained on its own: one curve per host, named after it.
    several = points.groupby("run_id")["host"].transform("nunique") > 1 if "host" in points.columns \
        else pd.Series(False, index=points.index)
    curves: dict[str, Series] = {}
    for (_, row), by_host in zip(points.iterrows(), several, strict=True):
        if not _finite(row["elapsed_s"], row["value"]):
            continue
        model = row["model"] if "model" in row.index and _present(row["model"]) else None
        run = f"{_run_label(row)} {row['host']}" if by_host else _run_label(row)
        key = f"{run} {model}" if model else run
        curves.setdefault(key, Series(key, line=True)).points.append((float(row["elapsed_s"]), float(row["value"])))
    return list(curves.values())


def _deployment(summary: pd.DataFrame) -> list[Series]:
    sizes = [c for c in summary.columns if c.endswith(("model_bytes_gzip", "model_bytes"))]
    latencies = [c for c in summary.columns if c.endswith("latency_ms_p50")]
    if not sizes or not latencies:
        return []
    series = []
    for _, row in summary.iterrows():
        size = next((row[c] for c in sizes if _finite(row[c])), None)
        latency = next((row[c] for c in latencies if _finite(row[c])), None)
        if size is not None and latency is not None:
            series.append(Series(_variant_label(row), [(float(size) / 1e6, float(latency))]))
    return series


def _table(summary: pd.DataFrame) -> str:
    from orchestrator.report.render import display_frame, format_cell

    shown = display_frame(summary)
    head = "".join(f"<th>{_e(column)}</th>" for column in shown.columns)
    numeric = [shown[c].dtype.kind in "fiu" for c in shown.columns]
    rows = []
    for record in shown.itertuples(index=False):
        cells = []
        for value, is_number in zip(record, numeric, strict=True):
            sort_key = f' data-sort="{value!r}"' if is_number and _finite(value) else ""
            cells.append(f'<td class="{"num" if is_number else "text"}"{sort_key}>{_e(format_cell(value))}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="summary" data-table="summary"><thead><tr>{head}</tr></thead>' \
           f"<tbody>{''.join(rows)}</tbody></table>"


def _json_for_script(data: object) -> str:
    """JSON that cannot end its <script> element early: <, > and & become \\u escapes."""
    text = json.dumps(data, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _data(summary: pd.DataFrame, charts: Iterable[Chart]) -> dict[str, object]:
    records = json.loads(summary.to_json(orient="records", date_format="iso"))
    return {
        "summary": records,
        "charts": {
            chart.name: {"bars": chart.bars, "series": [{"label": s.label, "points": s.points} for s in chart.series]}
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
table.summary{border-collapse:collapse;font-size:13px}
table.summary th,table.summary td{border-bottom:1px solid #ddd;padding:3px 8px;white-space:nowrap}
table.summary th{cursor:pointer;text-align:left;background:#f6f6f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
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


def render_html(samples: pd.DataFrame, summary: pd.DataFrame, title: str = "Orchestrate report") -> str:
    """Returns the whole report as one HTML document that needs no network to open.

    Args:
        samples: the samples view (one row per sample), for the accuracy curves.
        summary: the summary view (one row per run, recipe and host, and a multi-host run's totals), for the
            table and the other charts.
        title: the page title.
    """
    charts = build_charts(samples, summary)
    runs = summary["run_id"].nunique() if "run_id" in summary.columns else 0
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>{runs} run(s), {len(summary)} row(s). Hover a mark for its values; "
        "click a column header to sort.</p>"
        f"<div class=\"charts\">{''.join(_figure(chart) for chart in charts)}</div>"
        f"<h2>Summary</h2>{_table(summary)}"
        f"<script type=\"application/json\" id=\"report-data\">{_json_for_script(_data(summary, charts))}</script>"
        f"<script>{_JS}</script></body></html>\n"
    )
