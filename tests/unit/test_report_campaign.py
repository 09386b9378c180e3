"""The campaign report on hand-made frames: cells joined with their runs, the best configurations, every rendering."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import xml.etree.ElementTree as ElementTree

import pandas as pd
import pytest
from rich.console import Console

from orchestrator.report.campaign import (
    BEST_COLUMNS,
    CELL_COLUMNS,
    best_configurations,
    campaign_frame,
    campaign_tables,
    render_campaign_html,
    render_campaign_text,
)

HOSTILE = "<script>alert(1)</script>"
NAN = float("nan")
# The accuracy sweep on the aws machine: (learning rate, dropout) → test accuracy; (0.01, 0.5) never ran.
GRID = {(0.0001, 0.0): 0.70, (0.0001, 0.2): 0.73, (0.0001, 0.5): 0.76, (0.001, 0.0): 0.79, (0.001, 0.2): 0.82,
        (0.001, 0.5): 0.85, (0.01, 0.0): 0.88, (0.01, 0.2): 0.91}


def _cell(cell_id: str, position: int, where: str, provider: str, state: str = "succeeded",
          run_id: str | None = None, suite: str = "throughput", values: str = "suite=throughput",
          cost: float = 0.5, error: str | None = None) -> dict[str, object]:
    return {"campaign": "sweep", "cell_id": cell_id, "position": position, "where": where, "provider": provider,
            "suite": suite, "state": state, "run_id": run_id, "cost_usd": cost, "error": error, "values": values}


def _row(run_id: str, provider: str, price: float, **figures: object) -> dict[str, object]:
    """A summary row that stands for its run, priced at ``price`` $/h (``None`` where a figure is unknown)."""
    row: dict[str, object] = {
        "run_id": run_id, "name": None, "provider": provider, "suite": "throughput", "state": "succeeded",
        "host": "box", "hosts": 1, "model": "cnn", "batch_size": 32, "precision": "float32",
        "learning_rate": None, "dropout": None, "test_accuracy": NAN, "train_images_per_sec": NAN,
        "train_images_per_usd": NAN, "time_to_accuracy_s": NAN, "cost_to_accuracy_usd": NAN,
        "price_per_hour": price, "cost_usd": price / 10, "duration_s": 360.0,
    }
    row.update(figures)
    return row


def _throughput(run_id: str, provider: str, price: float, batch: int, images_per_sec: float,
                **figures: object) -> dict[str, object]:
    per_usd = images_per_sec * 3600 / price if price > 0 else NAN
    return _row(run_id, provider, price, **{"batch_size": batch, "train_images_per_sec": images_per_sec,
                                            "train_images_per_usd": per_usd, **figures})


def _accuracy(run_id: str, provider: str, price: float, learning_rate: float, dropout: float, accuracy: float,
              seconds: float | None) -> dict[str, object]:
    cost = seconds / 3600 * price if seconds is not None else NAN
    return _row(run_id, provider, price, suite="accuracy", learning_rate=learning_rate, dropout=dropout,
                test_accuracy=accuracy, time_to_accuracy_s=seconds if seconds is not None else NAN,
                cost_to_accuracy_usd=cost)


def campaign_cells() -> pd.DataFrame:
    """Throughput on aws (2 batch sizes), azure and an unpriced local box; an accuracy grid on aws; a failed cell
    with no rows and a skipped one that never ran, on a machine with a hostile name."""
    rows = [
        _cell("a000000001", 1, "aws g4dn.xlarge", "aws", run_id="r-aws-tp"),
        _cell("a000000002", 2, "azure NC4as_T4_v3", "azure", run_id="r-az-tp"),
        _cell("a000000003", 3, "local", "local", run_id="r-local-tp", cost=0.0),
        _cell("a000000004", 4, HOSTILE, "aws", state="failed", run_id="r-failed", error="out of memory"),
        _cell("a000000005", 5, HOSTILE, "aws", state="skipped", cost=NAN),
    ]
    for i, (learning_rate, dropout) in enumerate(GRID):
        rows.append(_cell(f"b00000000{i}", 10 + i, "aws g4dn.xlarge", "aws", run_id=f"r-acc-{i}", suite="accuracy",
                          values=f"suite=accuracy, learning_rate={learning_rate}, dropout={dropout}"))
    frame = pd.DataFrame(rows)
    return frame.iloc[::-1].reset_index(drop=True)  # positions, not the frame's order, set the report's order


def campaign_summary() -> pd.DataFrame:
    """The runs' summary rows for :func:`campaign_cells` (the failed cell's run has none)."""
    rows = [
        _throughput("r-aws-tp", "aws", 0.526, 32, 400.0),
        _throughput("r-aws-tp", "aws", 0.526, 64, 520.0),
        _throughput("r-az-tp", "azure", 0.526, 64, 480.0),
        _throughput("r-local-tp", "local", 0.0, 64, 900.0, train_images_per_usd=1e12),  # unpriced: no real $
    ]
    for i, ((learning_rate, dropout), accuracy) in enumerate(GRID.items()):
        # The two best accuracies reached the target; the cheapest of them is (0.01, 0.0): 60 s at $0.526/h.
        seconds = {6: 60.0, 7: 90.0}.get(i)
        rows.append(_accuracy(f"r-acc-{i}", "aws", 0.526, learning_rate, dropout, accuracy, seconds))
    return pd.DataFrame(rows)


@pytest.fixture
def cells() -> pd.DataFrame:
    return campaign_cells()


@pytest.fixture
def summary() -> pd.DataFrame:
    return campaign_summary()


def test_campaign_frame_keeps_failed_and_unrun_cells_once_in_position_order(
    cells: pd.DataFrame, summary: pd.DataFrame
) -> None:
    frame = campaign_frame(cells, summary)
    assert list(frame.columns[: len(CELL_COLUMNS)]) == CELL_COLUMNS
    # Cell 1 measured two batch sizes: a row each; every other cell, one row.
    assert list(frame["cell_id"]) == ["a000000001", "a000000001", "a000000002", "a000000003", "a000000004",
                                      "a000000005", *(f"b00000000{i}" for i in range(len(GRID)))]
    failed, skipped = frame[frame["state"] == "failed"], frame[frame["state"] == "skipped"]
    assert len(failed) == 1 and failed["error"].item() == "out of memory"
    assert math.isnan(failed["train_images_per_sec"].item())
    assert len(skipped) == 1 and skipped["run_id"].item() is None
    # The cell's billed cost and the run's priced cost are two columns.
    first = frame.iloc[0]
    assert first["cell_cost_usd"] == 0.5 and first["cost_usd"] == pytest.approx(0.0526)
    assert list(frame.loc[frame["cell_id"] == "a000000001", "batch_size"]) == [32, 64]
    assert str(frame["batch_size"].dtype) == "Int64"  # whole numbers stay whole next to unrun cells


def test_campaign_frame_joins_a_multi_host_runs_total_row_only(cells: pd.DataFrame) -> None:
    summary = pd.DataFrame([
        _throughput("r-aws-tp", "aws", 0.5, 64, 300.0, host="box0", hosts=1),
        _throughput("r-aws-tp", "aws", 0.5, 64, 310.0, host="box1", hosts=1),
        _throughput("r-aws-tp", "aws", 1.0, 64, 610.0, host="all 2", hosts=2),
    ])
    frame = campaign_frame(cells, summary)
    joined = frame[frame["cell_id"] == "a000000001"]
    assert list(joined["host"]) == ["all 2"] and joined["train_images_per_sec"].item() == 610.0


def test_campaign_frame_of_cells_without_any_run(cells: pd.DataFrame) -> None:
    frame = campaign_frame(cells, pd.DataFrame())
    assert len(frame) == len(cells) and list(frame.columns) == CELL_COLUMNS
    assert best_configurations(frame).empty


def _best(frame: pd.DataFrame) -> dict[tuple[str, str], tuple[str, float]]:
    best = best_configurations(frame)
    assert list(best.columns) == BEST_COLUMNS
    return {(scope, criterion): (cell_id, value)
            for scope, criterion, cell_id, value in zip(best["scope"], best["criterion"], best["cell_id"],
                                                        best["value"], strict=True)}


def test_best_configurations_per_provider_and_overall_for_both_criteria(
    cells: pd.DataFrame, summary: pd.DataFrame
) -> None:
    best = _best(campaign_frame(cells, summary))
    assert best == {
        ("overall", "images per $"): ("a000000001", pytest.approx(520 * 3600 / 0.526)),
        ("overall", "cost to accuracy"): ("b000000006", pytest.approx(60 / 3600 * 0.526)),
        ("aws", "images per $"): ("a000000001", pytest.approx(520 * 3600 / 0.526)),
        ("aws", "cost to accuracy"): ("b000000006", pytest.approx(60 / 3600 * 0.526)),
        ("azure", "images per $"): ("a000000002", pytest.approx(480 * 3600 / 0.526)),
    }


def test_best_configuration_says_its_recipe_unit_and_where(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    best = best_configurations(campaign_frame(cells, summary)).set_index(["scope", "criterion"])
    images = best.loc[("overall", "images per $")]
    assert images["configuration"] == "model=cnn batch_size=64 precision=float32"
    assert (images["unit"], images["where"], images["run_id"]) == ("images/$", "aws g4dn.xlarge", "r-aws-tp")
    accuracy = best.loc[("overall", "cost to accuracy")]
    assert accuracy["configuration"] == "model=cnn batch_size=32 precision=float32 learning_rate=0.01 dropout=0"
    assert accuracy["unit"] == "$"


def test_unpriced_rows_are_never_best_even_at_zero_cost(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    # The local box measured the most images/s, and reached the target fastest, for "$0": neither counts.
    summary = pd.concat([summary, pd.DataFrame([_accuracy("r-local-tp", "local", 0.0, 0.001, 0.2, 0.99, 5.0)])])
    best = _best(campaign_frame(cells, summary))
    assert not any(scope == "local" for scope, _ in best)
    assert best[("overall", "images per $")][0] == "a000000001"
    assert best[("overall", "cost to accuracy")][0] == "b000000006"


def test_a_run_that_never_reached_the_target_is_not_the_cheapest(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    summary = summary[~summary["run_id"].isin(["r-acc-6", "r-acc-7"])]
    best = _best(campaign_frame(cells, summary))
    assert ("overall", "cost to accuracy") not in best and ("aws", "cost to accuracy") not in best
    assert ("aws", "images per $") in best


def test_markdown_shows_the_best_rows_then_every_cell(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    frame = campaign_frame(cells, summary)
    text = render_campaign_text(frame, best_configurations(frame), "md")
    best_part, cells_part = text.split("## Cells")
    lines = [line for line in best_part.splitlines() if line.startswith("| ")]
    assert re.search(r"\| overall +\| images per \$ +\| 3,558,935 images/\$ +\| a000000001 +\| aws g4dn.xlarge", text)
    assert re.search(r"\| azure +\| images per \$ +\| 3,285,171 images/\$ +\| a000000002", text)
    assert re.search(r"\| overall +\| cost to accuracy +\| \$0.0088 +\| b000000006", text)
    assert len(lines) == 1 + 5  # the header and five best rows
    assert cells_part.count("| a000000001 ") == 2 and "out of memory" in cells_part
    assert "| 0.0001 " in cells_part  # a learning rate as swept, not rounded to four decimals


def test_csv_marks_the_best_rows_and_keeps_every_cell(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    frame = campaign_frame(cells, summary)
    rows = list(csv.DictReader(io.StringIO(render_campaign_text(frame, best_configurations(frame), "csv"))))
    assert len(rows) == len(frame)
    marked = {(row["cell_id"], row["batch_size"]): row["best_for"] for row in rows if row["best_for"]}
    assert marked == {("a000000001", "64"): "overall: images per $; aws: images per $",
                      ("a000000002", "64"): "azure: images per $",
                      ("b000000006", "32"): "overall: cost to accuracy; aws: cost to accuracy"}


def test_csv_writes_formula_like_names_as_text(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    cells.loc[cells["cell_id"] == "a000000002", "where"] = "=HYPERLINK(\"http://evil\")"
    frame = campaign_frame(cells, summary)
    rows = list(csv.DictReader(io.StringIO(render_campaign_text(frame, best_configurations(frame), "csv"))))
    [azure] = [row for row in rows if row["cell_id"] == "a000000002"]
    assert azure["where"] == "'=HYPERLINK(\"http://evil\")"


def test_json_holds_the_best_rows_and_every_cell(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    frame = campaign_frame(cells, summary)
    data = json.loads(render_campaign_text(frame, best_configurations(frame), "json"))
    assert [(row["scope"], row["criterion"], row["cell_id"]) for row in data["best"]] == [
        ("overall", "images per $", "a000000001"), ("overall", "cost to accuracy", "b000000006"),
        ("aws", "images per $", "a000000001"), ("aws", "cost to accuracy", "b000000006"),
        ("azure", "images per $", "a000000002")]
    assert len(data["cells"]) == len(frame) and data["cells"][5]["test_accuracy"] is None


def test_an_unknown_text_format_is_refused(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    frame = campaign_frame(cells, summary)
    with pytest.raises(ValueError, match="received 'xml'"):
        render_campaign_text(frame, best_configurations(frame), "xml")


def test_terminal_tables_show_the_best_rows_and_the_cells(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    frame = campaign_frame(cells, summary)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    for table in campaign_tables("sweep", frame, best_configurations(frame)):
        console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "campaign sweep: best configurations" in text and "3,558,935 images/$" in text
    assert re.search(r"azure +│ images per \$", text)
    assert "campaign sweep: 14 row(s) of 13 cell(s)" in text and "skipped" in text


def _html(cells: pd.DataFrame, summary: pd.DataFrame) -> str:
    frame = campaign_frame(cells, summary)
    return render_campaign_html(f"sweep {HOSTILE}", frame, best_configurations(frame))


def _section(page: str, where: str) -> str:
    found = re.search(rf'<section class="machine" data-where="{re.escape(where)}">.*?</section>', page, re.S)
    assert found, f"no section for {where}"
    return found.group(0)


def test_html_draws_a_heat_map_only_for_machines_with_a_learning_rate_and_dropout_sweep(
    cells: pd.DataFrame, summary: pd.DataFrame
) -> None:
    page = _html(cells, summary)
    assert page.count('<svg class="heat-map"') == 1
    aws = _section(page, "aws g4dn.xlarge")
    assert len(re.findall(r'<rect class="heat" ', aws)) == len(GRID)
    assert len(re.findall(r'<rect class="heat-missing" ', aws)) == 1  # (0.01, 0.5) never ran
    azure = _section(page, "azure NC4as_T4_v3")
    assert "heat-map" not in azure and "run the accuracy suite with learning_rate and dropout swept" in azure


def _grid(section: str) -> dict[tuple[str, str], float]:
    """Reads the heat-map as a reader does: each square's accuracy under its dropout tick and beside its learning
    rate tick."""
    svg = ElementTree.fromstring(re.search(r'<svg class="heat-map".*?</svg>', section, re.S).group(0))  # type: ignore[union-attr]
    ticks = [t for t in svg.iter("text") if t.get("class") == "tick"]
    columns = {t.text: float(t.get("x", "nan")) for t in ticks if t.get("text-anchor") == "middle"}
    rows = {t.text: float(t.get("y", "nan")) for t in ticks if t.get("text-anchor") == "end"}
    values = [t for t in svg.iter("text") if t.get("class") == "heat-value"]
    grid = {}
    for rect in (r for r in svg.iter("rect") if r.get("class") == "heat"):
        x, y = float(rect.get("x", "nan")), float(rect.get("y", "nan"))
        right, bottom = x + float(rect.get("width", "nan")), y + float(rect.get("height", "nan"))
        [dropout] = [label for label, at in columns.items() if x < at < right]
        [learning_rate] = [label for label, at in rows.items() if y < at < bottom]
        [shown] = [t.text for t in values
                   if x < float(t.get("x", "nan")) < right and y < float(t.get("y", "nan")) < bottom]
        grid[(str(learning_rate), str(dropout))] = float(str(shown))
    return grid


def test_html_heat_map_puts_each_accuracy_at_its_learning_rate_and_dropout(
    cells: pd.DataFrame, summary: pd.DataFrame
) -> None:
    aws = _section(_html(cells, summary), "aws g4dn.xlarge")
    assert _grid(aws) == {(f"{lr:g}", f"{dropout:g}"): accuracy for (lr, dropout), accuracy in GRID.items()}
    ticks = dict(re.findall(r'<text class="tick" x="[\d.]+" y="([\d.]+)" text-anchor="end">([^<]+)</text>', aws))
    by_label = {label: float(y) for y, label in ticks.items()}
    assert by_label["0.0001"] > by_label["0.001"] > by_label["0.01"]  # learning rates rise up the page


def test_html_heat_map_colours_by_accuracy_and_explains_each_square(
    cells: pd.DataFrame, summary: pd.DataFrame
) -> None:
    aws = _section(_html(cells, summary), "aws g4dn.xlarge")
    fills = dict(re.findall(r'<rect class="heat" [^>]*fill="(#[0-9a-f]{6})"[^>]*data-accuracy="([\d.]+)"', aws))
    by_accuracy = {float(accuracy): fill for fill, accuracy in fills.items()}
    assert by_accuracy[0.70] == "#440154" and by_accuracy[0.91] == "#fde725"  # the scale's two ends
    assert len(set(by_accuracy.values())) == len(GRID)
    assert "cell b000000006 (suite=accuracy, learning_rate=0.01, dropout=0.0); learning rate 0.01, dropout 0; " \
           "test accuracy 0.8800; time to accuracy 60 s; cost to accuracy $0.00877" in aws
    assert '<div class="heat-legend"><span>test accuracy 0.700</span>' in aws


def test_html_heat_map_shows_the_best_of_several_cells_at_one_combination(
    cells: pd.DataFrame, summary: pd.DataFrame
) -> None:
    cells = pd.concat([cells, pd.DataFrame([_cell("c000000001", 30, "aws g4dn.xlarge", "aws", run_id="r-again",
                                                  suite="accuracy")])])
    summary = pd.concat([summary, pd.DataFrame([_accuracy("r-again", "aws", 0.526, 0.001, 0.2, 0.95, None)])])
    aws = _section(_html(cells, summary), "aws g4dn.xlarge")
    assert _grid(aws)[("0.001", "0.2")] == 0.95
    assert len(re.findall(r'<rect class="heat" ', aws)) == len(GRID)
    assert "cell c000000001 (suite=throughput); learning rate 0.001, dropout 0.2; test accuracy 0.9500; " \
           "the best of 2 rows measured here" in aws


def test_html_batch_size_chart_draws_a_point_per_batch_size_and_machine(
    cells: pd.DataFrame, summary: pd.DataFrame
) -> None:
    page = _html(cells, summary)
    data = json.loads(re.search(r'id="campaign-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert data["batch_size_curves"]["aws g4dn.xlarge"] == [{"label": "cnn float32", "points": [[32, 400.0],
                                                                                                [64, 520.0]]}]
    chart = re.search(r'data-chart="batch_size_curve".*?</figure>', _section(page, "aws g4dn.xlarge"), re.S)
    assert chart and len(re.findall(r'<circle class="mark"', chart.group(0))) == 2
    assert '<path class="line"' in chart.group(0)
    assert "run the throughput suite with batch_sizes swept" in _section(page, HOSTILE.replace("<", "&lt;")
                                                                          .replace(">", "&gt;"))


def test_html_escapes_hostile_names_and_embeds_the_data(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    page = _html(cells, summary)
    assert HOSTILE not in page
    assert "<title>Campaign sweep &lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert 'data-where="&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    data = json.loads(re.search(r'id="campaign-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert data["campaign"] == f"sweep {HOSTILE}" and len(data["best"]) == 5
    assert "http://" not in page and "https://" not in page
    assert "document.body.setAttribute('data-ready', 'true')" in page


def test_html_best_table_and_cells_table(cells: pd.DataFrame, summary: pd.DataFrame) -> None:
    page = _html(cells, summary)
    best = re.search(r'<table class="best".*?</table>', page, re.S)
    assert best and best.group(0).count("<tr>") == 1 + 5 and "3,558,935 images/$" in best.group(0)
    table = re.search(r'<table class="summary" data-table="cells".*?</table>', page, re.S)
    assert table and table.group(0).count("<tr>") == 1 + 14
    assert '<td class="text state state-failed">failed</td>' in table.group(0)


def test_html_without_any_measurement_says_what_would_draw_it(cells: pd.DataFrame) -> None:
    frame = campaign_frame(cells, pd.DataFrame())
    page = render_campaign_html("empty", frame, best_configurations(frame))
    assert "<svg" not in page
    assert "No cell has a training throughput or a cost to accuracy on a priced machine" in page
