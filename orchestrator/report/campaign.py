"""The campaign report: a sweep's cells joined with their runs' figures, the best configurations, and their renderings.

A campaign is a sweep of cells (machines × suites × params), each cell one run in the store. :func:`campaign_frame`
joins each cell with its run's summary rows; :func:`best_configurations` picks, per provider and overall, the
configuration with the most training images per dollar and the one that reached the target accuracy for the least
money. The terminal, Markdown, CSV and JSON renderings are here; the HTML page's heat-maps and batch-size curves
are drawn by :mod:`orchestrator.report.heatmap`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.report.charts import Chart, Series, figure_html, finite, html_text, present, settle
from orchestrator.report.frame import stands_for_run
from orchestrator.report.heatmap import HeatMap, accuracy_range, batch_size_chart, category, heat_map_figure, heat_maps
from orchestrator.report.html import CSS, SORT_SCRIPT, accuracy_curves, json_for_script, label_runs
from orchestrator.report.labels import narrowed
from orchestrator.report.metrics import as_floats, price_per_hour, spread_note
from orchestrator.report.render import LABELS, FittedTable, format_cell, frame_table, printable, render_text

# The cell's own columns, first in the campaign frame. ``cell_cost_usd`` is what the campaign billed for the cell;
# the run's priced cost (a total row: every machine of the run) stays ``cost_usd``, as in the summary.
CELL_COLUMNS = ["campaign", "position", "cell_id", "where", "provider", "suite", "values", "swept", "state", "run_id",
                "cell_cost_usd", "error"]
# Summary columns that the cell already has (its own state is the campaign's, a pending or skipped cell included).
_CELL_FACTS = ("provider", "suite", "state")
# The summary columns a reader of a campaign wants, in this order, after the cell's; the others follow.
SUMMARY_FIRST = [
    "host", "machine_type", "model", "batch_size", "precision", "xla", "optimizer", "learning_rate", "dropout",
    "test_accuracy", "train_images_per_sec", "train_images_per_usd", "time_to_accuracy_s", "cost_to_accuracy_usd",
    "price_per_hour", "cost_usd", "duration_s",
]
# The recipe keys that name a configuration, in the order a reader expects them.
CONFIGURATION_KEYS = ("model", "batch_size", "precision", "xla", "optimizer", "learning_rate", "dropout")
BEST_COLUMNS = ["scope", "criterion", "value", "unit", "cell_id", "where", "configuration", "run_id"]
OVERALL = "overall"
# The cells table's columns (when the frame has them), and the ones it always shows: what varies between the cells
# first (``swept``, see orchestrator.report.labels), the cell id last.
_CELL_TABLE = ["swept", "where", "state", "run_id", "host", "model", "batch_size", "precision", "learning_rate",
               "dropout", "test_accuracy", "train_images_per_sec", "spread_flag", "train_images_per_usd",
               "cost_to_accuracy_usd", "cell_cost_usd", "error", "cell_id"]
_ALWAYS = ("swept", "where", "state", "cell_id")
CAMPAIGN_LABELS = {"cell_id": "cell", "cell_cost_usd": "cell $", "learning_rate": "lr"}
_PRIORITY = ("swept", "where", "state", "train img/$", "$ to acc", "test acc", "train img/s", "cell $", "cell")
EXCLUDED = "Rows priced at $0 or not priced (an unpriced local box) are left out: their figures per dollar say nothing."
NO_BEST = "No cell has a training throughput or a cost to accuracy on a priced machine: run the throughput or " \
          "accuracy suite on a priced machine (or give price_per_hour to the campaign's machines)."


@dataclass(frozen=True)
class Criterion:
    """One way to rank configurations."""

    name: str  # as the report says it
    column: str  # the campaign frame's column ranked
    unit: str
    higher_is_better: bool


CRITERIA = (
    Criterion("images per $", "train_images_per_usd", "images/$", higher_is_better=True),
    Criterion("cost to accuracy", "cost_to_accuracy_usd", "$", higher_is_better=False),
)


def campaign_frame(cells: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Returns one row per configuration of the campaign: each cell joined with its run's summary rows.

    Only the summary rows that stand for a whole run are joined (a multi-host run's totals, see
    :func:`orchestrator.report.frame.stands_for_run`). A cell with no run, or a run with no rows, is kept once with
    blank figures, so that failed, pending and skipped cells show. Rows follow the cells' ``position``.

    Columns: :data:`CELL_COLUMNS` (the cell's ``cost_usd`` as ``cell_cost_usd``), then the summary's columns
    (:data:`SUMMARY_FIRST` first) except its provider, suite and state, which the cell has.

    Args:
        cells: one row per cell: campaign, cell_id, position, where, provider, suite, state, run_id (None when it
            never started), cost_usd (billed for the cell), error, values (the swept values as text).
        summary: the derived summary of the campaign's runs (``api.report_frames_derived``'s second frame).
    """
    ordered = cells.sort_values("position", kind="stable") if "position" in cells.columns else cells
    left = ordered.rename(columns={"cost_usd": "cell_cost_usd"})
    for column in CELL_COLUMNS:
        if column not in left.columns:
            left = left.assign(**{column: None})
    left = left[CELL_COLUMNS].assign(run_id=left["run_id"].astype(object).where(left["run_id"].notna(), None))
    if "run_id" not in summary.columns:
        return left.reset_index(drop=True)
    runs = summary[stands_for_run(summary) & summary["run_id"].notna()]
    runs = runs.drop(columns=[c for c in (*_CELL_FACTS, *CELL_COLUMNS) if c in runs.columns and c != "run_id"])
    runs = runs.assign(run_id=runs["run_id"].astype(object))
    first = [c for c in SUMMARY_FIRST if c in runs.columns]
    runs = runs[["run_id", *first, *(c for c in runs.columns if c not in first and c != "run_id")]]
    joined = pd.merge(left, runs, on="run_id", how="left", sort=False)
    # A cell without a run makes the run's whole-number columns (batch_size, hosts) float: keep them whole.
    whole = [c for c in runs.columns if runs[c].dtype.kind in "iu" and joined[c].dtype.kind == "f"]
    return joined.astype({c: "Int64" for c in whole}).reset_index(drop=True)


def configuration_text(row: pd.Series) -> str:
    """Returns a row's recipe in a few words: ``model=cnn batch_size=32 learning_rate=0.001``, keys it has only."""
    def shown(key: str) -> str:  # a swept rate as the heat-map's axis says it (0.0001, not 1e-04 or 0.0)
        return printable(category(row[key]) if key in ("learning_rate", "dropout") else row[key])

    return " ".join(f"{key}={shown(key)}" for key in CONFIGURATION_KEYS if key in row.index and present(row[key]))


def best_configurations(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns the best configuration of the campaign, overall and per provider, by each of :data:`CRITERIA`.

    "images per $" picks the row with the most ``train_images_per_usd``; "cost to accuracy" the row with the least
    ``cost_to_accuracy_usd`` (a run that never reached the target accuracy has none and is not a candidate). Rows
    whose ``price_per_hour`` is $0 or unknown are left out of both: an unpriced local box reaches the target for
    "$0", which says nothing about what it costs. A row's run state does not matter: a figure a failed run measured
    before it failed is still what it measured. Ties go to the earlier cell. A scope and criterion with no
    candidate has no row.

    Returns:
        One row per (scope, criterion): scope ("overall", then each provider in the order of its first cell),
        criterion (a :class:`Criterion` name), value (the figure), unit, cell_id, where, configuration (see
        :func:`configuration_text`) and run_id. Indexed by the chosen row's label in ``frame``.
    """
    price = price_per_hour(frame).to_numpy(dtype="float64")
    priced = np.isfinite(price) & (price > 0)
    provider = frame["provider"].astype(str).to_numpy() if "provider" in frame.columns else np.full(len(frame), "")
    scopes = [OVERALL, *dict.fromkeys(frame["provider"].dropna().astype(str))] if "provider" in frame.columns \
        else [OVERALL]
    rows, picked = [], []
    for scope in scopes:
        for criterion in CRITERIA:
            values = as_floats(frame, criterion.column).to_numpy(dtype="float64")
            candidates = np.flatnonzero(priced & np.isfinite(values) & ((provider == scope) | (scope == OVERALL)))
            if not len(candidates):
                continue
            ranked = values[candidates]
            position = int(candidates[ranked.argmax() if criterion.higher_is_better else ranked.argmin()])
            row = frame.iloc[position]
            rows.append([scope, criterion.name, float(values[position]), criterion.unit, row["cell_id"],
                         row["where"], configuration_text(row), row["run_id"]])
            picked.append(position)
    return pd.DataFrame(rows, columns=BEST_COLUMNS, index=frame.index[picked])


def value_text(value: float, unit: str) -> str:
    """Formats a best configuration's figure for reading: "6,313,153 images/$", "$0.000058"."""
    if unit == "$":
        if value == 0 or value >= 0.01:
            return f"${value:,.2f}"
        return f"${value:.{1 - math.floor(math.log10(abs(value)))}f}"
    return f"{value:,.0f} {unit}"


def best_reading(best: pd.DataFrame) -> pd.DataFrame:
    """Returns the best configurations as a reader scans them: the figure with its unit, short column names."""
    shown = best.assign(value=[value_text(v, u) for v, u in zip(best["value"], best["unit"], strict=True)])
    return shown.drop(columns="unit").rename(columns={"cell_id": "cell", "run_id": "run"}).reset_index(drop=True)


def cells_reading(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns the cells table's columns (those with a value somewhere, and always the cell, where and state)
    under short labels."""
    columns = [c for c in _CELL_TABLE if c in frame.columns and (c in _ALWAYS or frame[c].notna().any())]
    shown = frame[columns].copy()
    for swept in ("learning_rate", "dropout"):  # as swept (1e-05, 0.3), not as a table's four decimals
        if swept in shown.columns:
            shown[swept] = [category(value) if present(value) else None for value in shown[swept]]
    return shown.rename(columns=lambda c: CAMPAIGN_LABELS.get(c) or LABELS.get(c, c))


def campaign_tables(name: str, frame: pd.DataFrame, best: pd.DataFrame) -> list[FittedTable]:
    """Returns the terminal's tables: the best configurations, then every cell (as many columns as fit).

    Args:
        name: the campaign's name, for the titles.
        frame: a :func:`campaign_frame`.
        best: its :func:`best_configurations`.
    """
    best_caption = EXCLUDED if not best.empty else NO_BEST
    return [
        frame_table(best_reading(best), f"campaign {name}: best configurations", caption=best_caption,
                    priority=("scope", "criterion", "value", "cell", "where", "configuration")),
        FittedTable(cells_reading(frame), f"campaign {name}: {len(frame)} row(s) of {_cell_count(frame)} cell(s)",
                    caption="all columns: --format csv or json", priority=_PRIORITY,
                    whole=frozenset({"swept"})),  # what tells the rows apart is never cut
    ]


def _cell_count(frame: pd.DataFrame) -> int:
    return int(frame["cell_id"].nunique()) if "cell_id" in frame.columns else 0


def best_for(frame: pd.DataFrame, best: pd.DataFrame) -> list[str]:
    """Returns, per row of the frame, what it is best at ("overall: images per $; aws: cost to accuracy"), or ""."""
    said: dict[object, list[str]] = {}
    for label, scope, criterion in zip(best.index, best["scope"], best["criterion"], strict=True):
        said.setdefault(label, []).append(f"{scope}: {criterion}")
    return ["; ".join(said.get(label, [])) for label in frame.index]


def render_campaign_text(frame: pd.DataFrame, best: pd.DataFrame, fmt: str) -> str:
    """Renders the campaign as Markdown, CSV or JSON text.

    Markdown: the best configurations table, then the cells table. CSV: one row per row of the frame, every column,
    with a ``best_for`` column after ``cell_id`` naming what the row is best at (text that a spreadsheet would run
    as a formula is written as text). JSON: ``{"best": [...], "cells": [...]}``, every column, NaN as null.

    Args:
        frame: a :func:`campaign_frame`.
        best: its :func:`best_configurations`.
        fmt: "md", "csv" or "json".

    Raises:
        ValueError: another format.
    """
    if fmt == "md":
        best_md = render_text(best_reading(best), "md", reading=False) + f"\n{EXCLUDED}\n" if not best.empty \
            else f"{NO_BEST}\n"
        cells_md = render_text(cells_reading(frame), "md", reading=False)
        if "spread_flag" in frame.columns and frame["spread_flag"].notna().any():
            cells_md += f"\n{spread_note(marked=False)}\n"
        return f"## Best configurations\n\n{best_md}\n## Cells\n\n{cells_md}"
    if fmt == "csv":
        marked = frame.copy()
        marked.insert(list(frame.columns).index("cell_id") + 1 if "cell_id" in frame.columns else 0, "best_for",
                      best_for(frame, best))
        return render_text(marked, "csv", reading=False)
    if fmt == "json":
        return json.dumps({"best": _records(best), "cells": _records(frame)}, indent=2, default=str) + "\n"
    raise ValueError(f"format expected one of ('md', 'csv', 'json'), received {fmt!r}")


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """The frame's rows as JSON-ready dicts (NaN as None, dates as ISO text)."""
    records: list[dict[str, object]] = json.loads(frame.to_json(orient="records", date_format="iso"))
    return records


def render_campaign_html(name: str, frame: pd.DataFrame, best: pd.DataFrame,
                         samples: pd.DataFrame | None = None) -> str:
    """Returns the campaign report as one self-contained HTML document (no network needed to open it).

    The page: the best configurations; per machine (``where``), a learning rate × dropout heat-map of test accuracy,
    the training throughput by batch size and, with ``samples``, the accuracy curves of its runs; then every cell,
    its state coloured. The data behind it is embedded as JSON (``id="campaign-data"``).

    Args:
        name: the campaign's name (user input, like every text here: escaped).
        frame: a :func:`campaign_frame`.
        best: its :func:`best_configurations`.
        samples: the samples frame of the campaign's runs, for the per-epoch accuracy curves; None leaves them out.
    """
    maps = heat_maps(frame)
    low, high = accuracy_range(maps)
    machines = list(dict.fromkeys(frame["where"].astype(str))) if "where" in frame.columns else []
    sections, curves = [], {}
    for where in machines:
        rows = frame[frame["where"].astype(str) == where]
        chart = batch_size_chart(rows)
        curves[where] = [{"label": s.label, "points": s.points} for s in chart.series]
        sections.append(_machine_section(where, rows, maps.get(where), chart, samples, (low, high)))
    counts = ", ".join(f"{count} {state}" for state, count in _states(frame))
    data = {"campaign": name, "best": _records(best), "cells": _records(frame), "batch_size_curves": curves,
            "heat_maps": {where: [{"learning_rate": lr, "dropout": dropout, "accuracy": cell.accuracy,
                                   "cell_id": cell.cell_id, "measured": cell.measured}
                                  for (lr, dropout), cell in heat.cells.items()] for where, heat in maps.items()}}
    title = f"Campaign {name}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{html_text(title)}</title>"
        f"<style>{CSS}{_CAMPAIGN_CSS}</style></head><body>"
        f"<h1>{html_text(title)}</h1><p>{_cell_count(frame)} cell(s){': ' + html_text(counts) if counts else ''}; "
        f"{len(frame)} row(s). Hover a square or a mark for its values; click a column header of the cells table "
        "to sort.</p>"
        f"<h2>Best configurations</h2>{_best_table(best)}"
        f"<h2>By machine</h2>{''.join(sections) or _NO_CELLS}"
        f"<h2>Cells</h2><div class=\"scroll\">{_cells_table(frame)}</div>"
        f"<script type=\"application/json\" id=\"campaign-data\">{json_for_script(data)}</script>"
        f"<script>{SORT_SCRIPT}</script></body></html>\n"
    )


def _machine_section(where: str, rows: pd.DataFrame, heat: HeatMap | None, batch: Chart,
                     samples: pd.DataFrame | None, scale: tuple[float, float]) -> str:
    """One machine's figures: its heat-map, its batch-size curves and, with samples, its accuracy curves."""
    figures = [heat_map_figure(where, heat, *scale), figure_html(settle(batch))]
    if samples is not None:
        figures.append(figure_html(settle(_accuracy_chart(rows, samples))))
    return f'<section class="machine" data-where="{html_text(where)}"><h3>{html_text(where)}</h3>' \
           f'<div class="charts">{"".join(figures)}</div></section>'


def _accuracy_chart(rows: pd.DataFrame, samples: pd.DataFrame) -> Chart:
    chart = Chart("accuracy_vs_time", "Test accuracy against training time", "training seconds", "accuracy",
                  "no per-epoch accuracy curve in this machine's runs (run the accuracy suite)",
                  one_x="Every accuracy here was measured at {x} training seconds, so there is no curve to draw.")
    if "run_id" in samples.columns and "run_id" in rows.columns:
        chart.series = _cell_curves(rows, samples[samples["run_id"].isin(set(rows["run_id"].dropna()))])
    return chart


def _cell_curves(rows: pd.DataFrame, samples: pd.DataFrame) -> list[Series]:
    """The accuracy curves of the cells' runs, each named by what varies between the cells drawn (``lr 0.001 ·
    dropout 0.25``: the cells' ``swept`` labels without what all of them share), its cell id last; a run with
    several curves (hosts, models) adds what its own legend said of each."""
    cells = rows.dropna(subset=["run_id"]).drop_duplicates("run_id")
    cells = cells[cells["run_id"].isin(set(samples["run_id"]))]
    swept = cells["swept"] if "swept" in cells.columns else cells["cell_id"]
    names = narrowed([str(text) if present(text) and str(text) else str(cell_id)
                      for text, cell_id in zip(swept, cells["cell_id"], strict=True)])
    series: list[Series] = []
    for (run_id, cell_id), name in zip(zip(cells["run_id"], cells["cell_id"], strict=True), names, strict=True):
        own = samples[samples["run_id"] == run_id]
        prefix = label_runs(own.assign(run_id=own["run_id"].astype(str))).get(str(run_id), str(run_id))
        curves = accuracy_curves(own)
        for curve in curves:
            extra = curve.label.removeprefix(prefix).strip() if len(curves) > 1 else ""
            curve.label = f"{name}{' · ' + extra if extra else ''} (cell {cell_id})"
        series += curves
    return series


def _best_table(best: pd.DataFrame) -> str:
    if best.empty:
        return f'<p class="empty">{html_text(NO_BEST)}</p>'
    shown = best_reading(best)
    head = "".join(f"<th>{html_text(column)}</th>" for column in shown.columns)
    body = "".join("<tr>" + "".join(f'<td class="{html_text(column)}">{html_text(value)}</td>'
                                    for column, value in zip(shown.columns, record, strict=True)) + "</tr>"
                   for record in shown.itertuples(index=False))
    return f'<p class="note">{html_text(EXCLUDED)}</p><table class="best" data-table="best"><thead><tr>{head}</tr>' \
           f"</thead><tbody>{body}</tbody></table>"


def _cells_table(frame: pd.DataFrame) -> str:
    """Every row of the campaign, sortable (the page's script sorts ``table.summary``), each state coloured."""
    shown = cells_reading(frame)
    head = "".join(f"<th>{html_text(column)}</th>" for column in shown.columns)
    numeric = [shown.iloc[:, i].dtype.kind in "fiu" for i in range(shown.shape[1])]
    rows = []
    for record in shown.itertuples(index=False):
        cells = []
        for column, value, is_number in zip(shown.columns, record, numeric, strict=True):
            if column == "state":
                known = str(value) if str(value) in _STATES else "other"
                cells.append(f'<td class="text state state-{known}">{html_text(format_cell(value))}</td>')
                continue
            sort_key = f' data-sort="{value!r}"' if is_number and finite(value) else ""
            cells.append(f'<td class="{"num" if is_number else "text"}"{sort_key}>{html_text(format_cell(value))}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="summary" data-table="cells"><thead><tr>{head}</tr></thead>' \
           f"<tbody>{''.join(rows)}</tbody></table>"


def _states(frame: pd.DataFrame) -> list[tuple[str, int]]:
    """How many cells are in each state, most first."""
    if frame.empty or "state" not in frame.columns or "cell_id" not in frame.columns:
        return []
    counts = frame.drop_duplicates("cell_id")["state"].astype(str).value_counts()
    return [(str(state), int(count)) for state, count in counts.items()]


_NO_CELLS = '<p class="empty">no cells in this campaign</p>'
_STATES = ("succeeded", "failed", "interrupted", "running", "pending", "skipped")
_CAMPAIGN_CSS = """
h2{font-size:17px;margin:20px 0 6px}h3{font-size:15px;margin:12px 0 0}
table.best{border-collapse:collapse;font-size:13px}
table.best th,table.best td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}
table.best td.configuration{white-space:normal}.scroll{overflow-x:auto}
table.best th{background:#f6f6f6}
svg.heat-map{height:auto}
.heat-value{font-size:11px;pointer-events:none;font-variant-numeric:tabular-nums}
rect.heat,rect.heat-missing{stroke:#fff;stroke-width:1}
.heat-legend{display:flex;align-items:center;gap:6px;font-size:12px;color:#333;margin-top:4px}
.heat-legend .ramp{display:inline-block;width:160px;height:10px;border-radius:2px}
td.state{font-weight:600}.state-succeeded{color:#1a7f37}.state-failed{color:#cf222e}
.state-interrupted{color:#bc4c00}.state-running{color:#0969da}.state-pending,.state-skipped,.state-other{color:#777}
"""
