"""One self-contained HTML report of runs: the summary table and five charts, readable with no network.

What each chart shows is decided here (:func:`build_charts`); how a chart is drawn is
:mod:`orchestrator.report.charts`. The data behind the charts and the table is embedded as JSON (``<script
type="application/json" id="report-data">``) for anyone who wants to script against the file; a small inline script
only makes the table sortable. Every string from the data (run names are user input) is escaped, and the JSON so
that it cannot close its ``<script>`` element.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence

import pandas as pd

from orchestrator.report.charts import Chart, Series, figure_html, finite, html_text, present, settle
from orchestrator.report.frame import VARIANT_KEYS, stands_for_run
from orchestrator.report.metrics import SPREAD_BOUND, SPREADS, bound_text, spread_note, spread_text
from orchestrator.report.render import display_frame, format_cell, has_spread, printable, reading_columns, spread_cell

# The charts, by their stable ``data-chart`` name, in page order.
CHARTS = ("throughput_vs_price", "images_per_dollar", "batch_size_curves", "accuracy_vs_time", "deployment")
TABLE_ROWS = 1000  # rows of the summary the page's table (and its embedded JSON) carry; csv has every row
_THROUGHPUT = "train_images_per_sec"


def label_runs(frame: pd.DataFrame) -> dict[str, str]:
    """Names each run the same way in every legend: its name (control characters removed), else its id; a name
    that several runs share gets the run id after it, so that no two runs read the same."""
    if frame.empty or "run_id" not in frame.columns:
        return {}
    runs = frame.drop_duplicates("run_id")
    names = runs["name"] if "name" in runs.columns else [None] * len(runs)
    labels = {str(run_id): printable(name).strip() if present(name) and printable(name).strip() else str(run_id)
              for run_id, name in zip(runs["run_id"], names, strict=True)}
    taken: dict[str, int] = {}
    for label in labels.values():
        taken[label] = taken.get(label, 0) + 1
    return {run_id: f"{label} ({run_id})" if taken[label] > 1 and label != run_id else label
            for run_id, label in labels.items()}


def _recipe_label(row: pd.Series, run_labels: dict[str, str], keys: Sequence[str]) -> str:
    recipe = [f"{key}={printable(row[key])}" for key in keys if key in row.index and present(row[key])]
    return " ".join([run_labels.get(str(row["run_id"]), str(row["run_id"])), *recipe])


def _varying(frame: pd.DataFrame) -> list[str]:
    """The recipe keys whose values differ between the rows: the ones that tell two marks of a run apart."""
    return [key for key in VARIANT_KEYS if key in frame.columns and frame[key].astype(str).nunique() > 1]


def _price_per_hour(row: pd.Series) -> float | None:
    """The row's price in $/h (a total row's: its hosts' summed): ``price_per_hour`` when the frame has it
    (billed amount over billed hours), else the row's cost over the run's duration; None for a run that was free
    or not priced."""
    listed = row.get("price_per_hour")
    if isinstance(listed, int | float) and math.isfinite(listed) and listed > 0:
        return float(listed)
    cost, seconds = row.get("cost_usd"), row.get("duration_s")
    if not finite(cost, seconds) or not cost or not seconds or cost <= 0 or seconds <= 0:
        return None
    return float(cost) * 3600 / float(seconds)


def build_charts(samples: pd.DataFrame, summary: pd.DataFrame) -> list[Chart]:
    """Returns the report's five charts from the samples and summary frames (see ``frame.py``).

    A run over several hosts is plotted once, by its total rows (throughput summed, prices summed); its
    hosts' own rows are in the table. However many runs there are, each chart stays readable (see
    :func:`settle`): the page's size follows what a chart can show, not the number of samples.
    """
    summary = summary[stands_for_run(summary)]
    run_labels = label_runs(summary)
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
            if not finite(throughput):
                continue
            label = _recipe_label(row, run_labels, keys)
            hourly = _price_per_hour(row)
            if hourly is not None:
                price.series.append(Series(label, [(hourly, float(throughput))]))
                per_dollar.bars.append((label, float(throughput) * 3600 / hourly))
            if "batch_size" in row.index and present(row["batch_size"]):
                model = row["model"] if "model" in row.index and present(row["model"]) else "-"
                run_id = str(row["run_id"])
                series = by_model.setdefault((str(model), run_id), Series(
                    f"{model} on {run_labels.get(run_id, run_id)}", line=True))
                series.points.append((float(row["batch_size"]), float(throughput)))
        batch.series = list(by_model.values())
    accuracy.series = accuracy_curves(samples)
    deployment.series = _deployment(summary, run_labels)
    return [settle(chart) for chart in (price, per_dollar, batch, accuracy, deployment)]


def accuracy_curves(samples: pd.DataFrame) -> list[Series]:
    """Returns the samples' per-epoch test accuracy against training seconds: a curve per run and model (and per
    host of a multi-host run)."""
    if samples.empty or "elapsed_s" not in samples.columns:
        return []
    points = samples[(samples["benchmark"] == "train_curve") & (samples["metric"] == "accuracy")]
    points = points[points["elapsed_s"].notna() & points["value"].notna()]
    run_labels = label_runs(points)
    # Each host of a multi-host run trained on its own: one curve per host, named after it.
    several = points.groupby("run_id")["host"].transform("nunique") > 1 if "host" in points.columns \
        else pd.Series(False, index=points.index)
    curves: dict[tuple[str, str, str], Series] = {}
    for (_, row), by_host in zip(points.iterrows(), several, strict=True):
        if not finite(row["elapsed_s"], row["value"]):
            continue
        model = row["model"] if "model" in row.index and present(row["model"]) else None
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
        size = next((row[c] for c in sizes if finite(row[c])), None)
        latency = next((row[c] for c in latencies if finite(row[c])), None)
        if size is not None and latency is not None:
            series.append(Series(_recipe_label(row, run_labels, keys), [(float(size) / 1e6, float(latency))]))
    return series


def _table(summary: pd.DataFrame, spread_bound: float) -> str:
    """The summary's reading columns as a sortable table, at most :data:`TABLE_ROWS` rows of it; a throughput
    with its repeats' spread ("812 ±7.1%"), a noisy one (spread above ``spread_bound``) of class ``noisy`` and
    titled with why."""
    rows_shown = summary.iloc[:TABLE_ROWS]
    shown = display_frame(rows_shown)
    raw = reading_columns(rows_shown)  # display_frame's columns, before their labels
    spreads = [rows_shown[SPREADS[c]].tolist() if c in SPREADS and SPREADS[c] in rows_shown.columns else None
               for c in raw]
    head = "".join(f"<th>{html_text(column)}</th>" for column in shown.columns)
    numeric = [shown[c].dtype.kind in "fiu" for c in shown.columns]
    rows = []
    for position, record in enumerate(shown.itertuples(index=False)):
        cells = []
        for value, is_number, spread in zip(record, numeric, spreads, strict=True):
            sort_key = f' data-sort="{value!r}"' if is_number and finite(value) else ""
            text, noisy, title = format_cell(value), False, ""
            if spread is not None:
                text, noisy = spread_cell(value, spread[position], spread_bound)
                if finite(spread[position]):
                    title = f' title="repeats spread {html_text(spread_text(spread[position]))} ' \
                            f'(coefficient of variation){html_text(" > " + bound_text(spread_bound)) if noisy else ""}"'
            kind = ("num" if is_number else "text") + (" noisy" if noisy else "")
            cells.append(f'<td class="{kind}"{sort_key}{title}>{html_text(text)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="summary" data-table="summary"><thead><tr>{head}</tr></thead>' \
           f"<tbody>{''.join(rows)}</tbody></table>"


def json_for_script(data: object) -> str:
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


# The page's style: charts, legends and the sortable table (the campaign page adds its own after it).
CSS = """
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
SORT_SCRIPT = """
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
    bound = SPREAD_BOUND if spread_bound is None else spread_bound
    note = f'<p class="note spread">{html_text(spread_note(bound))}</p>' if has_spread(summary) else ""
    charts = build_charts(samples, summary)
    runs = summary["run_id"].nunique() if "run_id" in summary.columns else 0
    cut = f"<p class=\"note\">The table shows the first {TABLE_ROWS:,} of {len(summary):,} rows; every row: " \
          "<code>orchestrate report --format csv</code>.</p>" if len(summary) > TABLE_ROWS else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{html_text(title)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<h1>{html_text(title)}</h1><p>{runs} run(s), {len(summary)} row(s). Hover a mark for its values; "
        "click a column header to sort.</p>"
        f"<div class=\"charts\">{''.join(figure_html(chart) for chart in charts)}</div>"
        f"<h2>Summary</h2>{cut}{note}{_table(summary, bound)}"
        f"<script type=\"application/json\" id=\"report-data\">{json_for_script(_data(summary, charts))}</script>"
        f"<script>{SORT_SCRIPT}</script></body></html>\n"
    )
