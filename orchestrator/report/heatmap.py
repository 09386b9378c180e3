"""The campaign page's per-machine figures: a learning rate × dropout heat-map of test accuracy, and the training
throughput by batch size.

Drawn as inline SVG like :mod:`orchestrator.report.charts` (which draws the batch-size curves): every
mark is in the document as written, nothing is fetched. The heat-map's axes are categories: each learning rate and
each dropout measured on the machine, in numeric order (learning rates upwards, so that a log sweep reads evenly);
a combination no cell measured is a grey square, and several cells at one combination show the best accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.report.charts import (
    LABEL_PX,
    TICK_PX,
    Chart,
    Series,
    finite,
    fit_label,
    html_text,
    number_text,
    present,
)

if TYPE_CHECKING:
    import pandas as pd

# A sequential scale that reads in grey print and to colour-blind readers (viridis), low accuracy to high.
_SCALE = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")
_MISSING = "#eeeeee"
_CELL_WIDTH, _CELL_HEIGHT = 64, 32
_PLOT_HEIGHT = 110  # at least: the rotated axis title must fit beside the rows
_TOP, _RIGHT, _BOTTOM = 12, 16, 44
_TITLE_X = 12
HEAT_EMPTY = "no test accuracy at a known learning rate and dropout on this machine (run the accuracy suite with " \
             "learning_rate and dropout swept, e.g. params: {learning_rate: [0.001, 0.01], dropout: [0.2, 0.5]})"
BATCH_EMPTY = "no training throughput at a known batch size on this machine (run the throughput suite with " \
              "batch_sizes swept, e.g. params: {batch_sizes: [32, 64, 128]})"


@dataclass
class HeatCell:
    """The best accuracy measured at one (learning rate, dropout) on one machine."""

    accuracy: float
    cell_id: str
    values: str  # the cell's swept values, as the campaign wrote them
    time_to_accuracy_s: float | None
    cost_to_accuracy_usd: float | None
    measured: int = 1  # rows of the campaign at this combination; the best of them is shown


@dataclass
class HeatMap:
    """One machine's accuracy by learning rate (rows, ascending) and dropout (columns, ascending)."""

    where: str
    learning_rates: list[str] = field(default_factory=list)
    dropouts: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], HeatCell] = field(default_factory=dict)  # (learning rate, dropout) → its best


def category(value: object) -> str:
    """Returns a swept value as an axis category: numbers in their shortest form (0.001, 0.5), text as it is."""
    number = _as_number(value)
    return f"{number:g}" if number is not None else str(value)


def _as_number(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _order(labels: set[str]) -> list[str]:
    """Numbers in numeric order, then text in text order ("auto")."""
    def key(label: str) -> tuple[int, float, str]:
        number = _as_number(label)
        return (0, number, "") if number is not None else (1, 0.0, label)

    return sorted(labels, key=key)


def heat_maps(frame: pd.DataFrame) -> dict[str, HeatMap]:
    """Returns a heat-map per machine (``where``) that has a row with a learning rate, a dropout and a test
    accuracy, in the order of the machines' first cells."""
    needed = ("where", "learning_rate", "dropout", "test_accuracy")
    if frame.empty or any(column not in frame.columns for column in needed):
        return {}
    maps: dict[str, HeatMap] = {}
    for _, row in frame.iterrows():
        accuracy = row["test_accuracy"]
        if not (present(row["learning_rate"]) and present(row["dropout"]) and finite(accuracy)):
            continue
        heat = maps.setdefault(str(row["where"]), HeatMap(str(row["where"])))
        key = (category(row["learning_rate"]), category(row["dropout"]))
        here = HeatCell(float(accuracy), str(row["cell_id"]), str(row["values"]) if present(row.get("values")) else "",
                        _figure(row, "time_to_accuracy_s"), _figure(row, "cost_to_accuracy_usd"))
        known = heat.cells.get(key)
        if known is None or here.accuracy > known.accuracy:  # a tie keeps the earlier cell
            heat.cells[key] = here
        heat.cells[key].measured = known.measured + 1 if known else 1
    for heat in maps.values():
        heat.learning_rates = _order({lr for lr, _ in heat.cells})
        heat.dropouts = _order({dropout for _, dropout in heat.cells})
    return maps


def _figure(row: pd.Series, column: str) -> float | None:
    value = row.get(column)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def accuracy_range(maps: dict[str, HeatMap]) -> tuple[float, float]:
    """Returns the lowest and highest accuracy over every heat-map: one colour scale for all machines."""
    accuracies = [cell.accuracy for heat in maps.values() for cell in heat.cells.values()]
    return (min(accuracies), max(accuracies)) if accuracies else (0.0, 1.0)


def colour(accuracy: float, low: float, high: float) -> str:
    """Returns the scale's colour for an accuracy (the highest colour when every accuracy is the same)."""
    share = (accuracy - low) / (high - low) if high > low else 1.0
    place = min(max(share, 0.0), 1.0) * (len(_SCALE) - 1)
    index = min(int(place), len(_SCALE) - 2)
    start, end = _rgb(_SCALE[index]), _rgb(_SCALE[index + 1])
    mixed = (round(a + (b - a) * (place - index)) for a, b in zip(start, end, strict=True))
    return "#" + "".join(f"{channel:02x}" for channel in mixed)


def _rgb(colour_hex: str) -> tuple[int, int, int]:
    return int(colour_hex[1:3], 16), int(colour_hex[3:5], 16), int(colour_hex[5:7], 16)


def _ink(fill: str) -> str:
    """Dark text on a light square, white on a dark one."""
    red, green, blue = _rgb(fill)
    return "#222222" if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else "#ffffff"


def _tooltip(heat: HeatMap, learning_rate: str, dropout: str) -> str:
    cell = heat.cells.get((learning_rate, dropout))
    if cell is None:
        return f"no cell measured learning rate {learning_rate}, dropout {dropout} on {heat.where}"
    words = [f"cell {cell.cell_id} ({cell.values})" if cell.values else f"cell {cell.cell_id}",
             f"learning rate {learning_rate}, dropout {dropout}", f"test accuracy {cell.accuracy:.4f}"]
    if cell.time_to_accuracy_s is not None:
        words.append(f"time to accuracy {number_text(cell.time_to_accuracy_s)} s")
    if cell.cost_to_accuracy_usd is not None:
        words.append(f"cost to accuracy ${cell.cost_to_accuracy_usd:.3g}")
    if cell.measured > 1:
        words.append(f"the best of {cell.measured} rows measured here")
    return "; ".join(words)


def heat_map_svg(heat: HeatMap, low: float, high: float) -> str:
    """Returns the heat-map as SVG: a square per (learning rate, dropout), coloured and labelled by accuracy."""
    rows, columns = len(heat.learning_rates), len(heat.dropouts)
    cell_height = max(_CELL_HEIGHT, math.ceil(_PLOT_HEIGHT / rows))
    y_ticks = [fit_label(label, 12 * TICK_PX, TICK_PX) for label in heat.learning_rates]
    left = math.ceil(_TITLE_X + 10 + 6 + max(len(tick) for tick in y_ticks) * TICK_PX)
    right, bottom = left + columns * _CELL_WIDTH, _TOP + rows * cell_height
    width, height = right + _RIGHT, bottom + _BOTTOM
    parts = []
    for row, learning_rate in enumerate(heat.learning_rates):
        y = bottom - (row + 1) * cell_height  # the lowest learning rate at the bottom
        parts.append(f'<text class="tick" x="{left - 6}" y="{y + cell_height / 2 + 4:.1f}" text-anchor="end">'
                     f"{html_text(y_ticks[row])}</text>")
        for column, dropout in enumerate(heat.dropouts):
            x = left + column * _CELL_WIDTH
            parts.append(_square(heat, learning_rate, dropout, x, y, cell_height, low, high))
    for column, dropout in enumerate(heat.dropouts):
        parts.append(f'<text class="tick" x="{left + (column + 0.5) * _CELL_WIDTH:.1f}" y="{bottom + 16}" '
                     f'text-anchor="middle">{html_text(fit_label(dropout, _CELL_WIDTH - 6, TICK_PX))}</text>')
    parts.append(f'<text class="label" x="{(left + right) / 2:.0f}" y="{height - 8}" text-anchor="middle">'
                 f"{html_text(fit_label('dropout', right - left, LABEL_PX))}</text>")
    parts.append(f'<text class="label" transform="translate({_TITLE_X} {(_TOP + bottom) / 2:.0f}) rotate(-90)" '
                 f'text-anchor="middle" dominant-baseline="central">learning rate</text>')
    return (f'<svg class="heat-map" viewBox="0 0 {width} {height}" style="max-width:{width}px" role="img" '
            f'aria-label="test accuracy by learning rate and dropout on {html_text(heat.where)}">'
            f'{"".join(parts)}</svg>')


def _square(heat: HeatMap, learning_rate: str, dropout: str, x: int, y: int, height: int, low: float,
            high: float) -> str:
    cell = heat.cells.get((learning_rate, dropout))
    place = f'x="{x}" y="{y}" width="{_CELL_WIDTH}" height="{height}"'
    title = f"<title>{html_text(_tooltip(heat, learning_rate, dropout))}</title>"
    if cell is None:
        return f'<rect class="heat-missing" {place} fill="{_MISSING}">{title}</rect>'
    fill = colour(cell.accuracy, low, high)
    return (f'<rect class="heat" {place} fill="{fill}" data-learning-rate="{html_text(learning_rate)}" '
            f'data-dropout="{html_text(dropout)}" data-accuracy="{cell.accuracy!r}" '
            f'data-cell="{html_text(cell.cell_id)}">{title}</rect>'
            f'<text class="heat-value" x="{x + _CELL_WIDTH / 2:.1f}" y="{y + height / 2 + 4:.1f}" '
            f'text-anchor="middle" fill="{_ink(fill)}">{cell.accuracy:.3f}</text>')


def legend(low: float, high: float) -> str:
    """Returns the colour scale's legend: the ramp from the lowest accuracy to the highest."""
    stops = ",".join(colour(low + (high - low) * i / 4, low, high) for i in range(5)) if high > low \
        else f"{colour(high, low, high)},{colour(high, low, high)}"
    return (f'<div class="heat-legend"><span>test accuracy {low:.3f}</span>'
            f'<span class="ramp" style="background:linear-gradient(to right,{stops})"></span>'
            f"<span>{high:.3f}</span></div>")


def heat_map_figure(where: str, heat: HeatMap | None, low: float, high: float) -> str:
    """Returns a machine's heat-map as a figure, or the sentence that says which runs would draw one."""
    cells = len(heat.cells) if heat else 0
    head = f'<figure class="chart heat" data-chart="accuracy_heat_map" data-points="{cells}">' \
           f"<figcaption>Test accuracy by learning rate and dropout</figcaption>"
    if heat is None:
        return f'{head}<p class="empty">{html_text(HEAT_EMPTY)}</p></figure>'
    best = any(cell.measured > 1 for cell in heat.cells.values())
    note = '<p class="note">Where several rows measured one combination, the best accuracy is shown.</p>' \
        if best else ""
    return f"{head}{note}{heat_map_svg(heat, low, high)}{legend(low, high)}</figure>"


def batch_size_chart(rows: pd.DataFrame) -> Chart:
    """Returns one machine's training throughput by batch size: a line per model and precision, the highest
    images/s where several rows measured one batch size."""
    chart = Chart("batch_size_curve", "Training throughput by batch size", "batch size", "images/s", BATCH_EMPTY,
                  one_x="Every cell here measured batch size {x} only, so there is no curve to draw: one bar per "
                        "model and precision.", log_x=True)
    if rows.empty or "batch_size" not in rows.columns or "train_images_per_sec" not in rows.columns:
        return chart
    best: dict[str, dict[float, float]] = {}
    merged = False
    for _, row in rows.iterrows():
        throughput, batch = row["train_images_per_sec"], _as_number(row["batch_size"])
        if not finite(throughput) or batch is None or batch <= 0:
            continue
        recipe = " ".join(str(row[k]) if k in row.index and present(row[k]) else "-" for k in ("model", "precision"))
        points = best.setdefault(recipe, {})
        merged = merged or batch in points
        points[batch] = max(points.get(batch, 0.0), float(throughput))
    chart.series = [Series(label, sorted(points.items()), line=True) for label, points in best.items()]
    if merged:
        chart.note = "Where several rows measured one model, precision and batch size, the highest images/s is drawn."
    return chart
