"""The report frames and renderers on a hand-made store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cost import CostLine
from orchestrator.report.frame import samples_frame, summary_frame
from orchestrator.report.render import render_text
from orchestrator.store import Store


def _sample(benchmark: str, metric: str, value: float, **metadata: object) -> dict[str, object]:
    return {"benchmark": benchmark, "metric": metric, "value": value, "unit": "", "metadata": metadata}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path)
    runs = {
        "r-1": [
            _sample("train_throughput", "images_per_sec", 100.0, model="cnn", batch_size=32, precision="float32"),
            _sample("train_throughput", "images_per_sec", 180.0, model="cnn", batch_size=64, precision="float32"),
            _sample("train", "accuracy", 0.97, model="cnn", batch_size=32, precision="float32"),
        ],
        "r-2": [],
    }
    for run_id, samples in runs.items():
        store.create_run(run_id, provider="local", suite="smoke", name=None, spec={})
        store.finish_run(
            run_id, state="succeeded" if samples else "failed", duration_s=10.0, error=None, log_tail=None,
            results={"m": {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}},
            costs=[CostLine(component="compute", seconds=10.0, billed_seconds=10.0, price_per_hour=36.0, amount_usd=0.1,
                            rule="per_second", machine_id="m")],
        )
    return store


def test_the_summary_has_a_row_per_run_and_variant_and_keeps_runs_that_measured_nothing(store: Store) -> None:
    summary = summary_frame(samples_frame(store, ["r-1", "r-2"]))
    rows = {(r.run_id, r.batch_size): r for r in summary.itertuples()}
    assert set(rows) == {("r-1", 32), ("r-1", 64), ("r-2", None)}
    assert rows[("r-1", 32)].train_images_per_sec == 100.0
    assert rows[("r-1", 32)].test_accuracy == 0.97
    assert rows[("r-1", 64)].train_images_per_sec == 180.0
    assert rows[("r-2", None)].state == "failed"
    assert rows[("r-1", 64)].cost_usd == pytest.approx(0.1)


def test_renderers_write_markdown_csv_and_json(store: Store) -> None:
    summary = summary_frame(samples_frame(store, ["r-1"]))
    markdown = render_text(summary, "md")
    assert markdown.splitlines()[0].startswith("| run ") and "train img/s" in markdown
    csv_lines = render_text(summary, "csv").splitlines()
    assert csv_lines[0].startswith("run_id,") and len(csv_lines) == 3
    records = json.loads(render_text(summary, "json"))
    assert {r["batch_size"] for r in records} == {32, 64}


def test_per_epoch_curve_points_stay_out_of_the_summary(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create_run("r-1", provider="local", suite="accuracy", name=None, spec={})
    samples = [
        _sample("train_curve", "accuracy", 0.5, model="cnn", epoch=1),
        _sample("train_curve", "accuracy", 0.9, model="cnn", epoch=2),
        _sample("train", "accuracy", 0.96, model="cnn", epoch=2),
    ]
    store.finish_run("r-1", state="succeeded", duration_s=1.0, error=None, log_tail=None,
                     results={"m": {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}},
                     costs=[])
    frame = samples_frame(store, ["r-1"])
    summary = summary_frame(frame)
    assert len(frame) == 3
    assert summary["test_accuracy"].tolist() == [0.96]


def _wide_store(home: Path) -> None:
    """Two named runs with every headline figure, on hosts with long cloud ids: wider than 100 columns."""
    with Store(home) as store:
        for i, (name, host) in enumerate((("v100-spot", "i-0abc123def4567890"), (None, "localhost"))):
            run_id = f"r-20261128-18010{i}-3fa9"
            store.create_run(run_id, provider="local", suite="smoke", name=name, spec={})
            metadata = {"model": "small_cnn", "precision": "float32"}
            samples = [
                _sample(benchmark, metric, value, batch_size=batch, **metadata)
                for batch in (32, 64)
                for benchmark, metric, value in (
                    ("train_throughput", "images_per_sec", 1234.5 + batch), ("inference_throughput",
                                                                                "images_per_sec", 5678.9),
                    ("train", "accuracy", 0.97), ("train", "time_to_accuracy_s", 1800.0),
                    ("train_throughput", "step_time_ms_p50", 12.5))
            ]
            store.finish_run(
                run_id, state="succeeded", duration_s=3600.0, error=None, log_tail=None,
                results={host: {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}},
                costs=[CostLine(component="compute", seconds=3600.0, billed_seconds=3600.0, price_per_hour=3.06,
                                amount_usd=3.06, rule="per_second", machine_id=host)],
            )


def _printed(renderable: object, width: int) -> list[str]:
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text().splitlines()


def test_a_table_at_100_columns_keeps_run_id_name_host_and_state_whole(tmp_path: Path) -> None:
    from orchestrator import api
    from orchestrator.report.render import rich_table

    _wide_store(tmp_path)
    _, summary = api.report_frames_derived(home=tmp_path)
    lines = _printed(rich_table(summary, "Orchestrate report (summary)"), 100)
    rows = [line for line in lines if line.startswith("│ r-")]
    assert len(rows) == len(summary) and all(len(line) <= 100 for line in lines)
    for row, (_, record) in zip(rows, summary.iterrows(), strict=True):
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[:1] == [record["run_id"]] and record["host"] in cells and "succeeded" in cells
    assert "…" not in "".join(rows) and "v100-spot" in "".join(rows)  # the name, the user's label, is shown
    header = next(line for line in lines if line.startswith("┃"))
    assert [cell.strip() for cell in header.strip("┃").split("┃")][:4] == ["run", "name", "host", "state"]
    # What did not fit is named, with the ways to see it.
    assert "--columns" in "\n".join(lines) and "cost_usd" in "\n".join(lines)


def test_a_name_is_shown_as_typed_without_markup_or_terminal_escapes(tmp_path: Path) -> None:
    from orchestrator.report.render import rich_table

    store = Store(tmp_path)
    store.create_run("r-1", provider="local", suite="smoke", name="[bold]x[/] \x1b[2Jy", spec={})
    store.finish_run("r-1", state="failed", duration_s=1.0, error=None, log_tail=None, results={}, costs=[])
    text = "\n".join(_printed(rich_table(summary_frame(samples_frame(store, ["r-1"])), "report [/]"), 120))
    assert "[bold]x[/] [2Jy" in text and "\x1b" not in text


def test_report_columns_chooses_columns_and_names_an_unknown_one(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    _wide_store(tmp_path)
    result = run_cli(tmp_path, "report", "--format", "csv", "--columns", "run_id,host,cost_usd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "run_id,host,cost_usd"
    table = run_cli(tmp_path, "report", "--columns", "run_id,state,inference_images_per_sec")
    assert table.returncode == 0 and "infer img/s" in table.stdout and "train img/s" not in table.stdout
    wrong = run_cli(tmp_path, "report", "--columns", "run_id,colour")
    assert wrong.returncode == 2 and wrong.stdout == ""
    [line] = wrong.stderr.strip().splitlines()
    assert "'colour'" in line and "run_id, name" in line and "cost_usd" in line


def test_piped_report_keeps_run_ids_hosts_and_states_whole(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    _wide_store(tmp_path)
    result = run_cli(tmp_path, "report", "--all")
    assert result.returncode == 0, result.stderr
    for word in ("r-20261128-180100-3fa9", "r-20261128-180101-3fa9", "i-0abc123def4567890", "localhost",
                 "succeeded", "v100-spot"):
        assert word in result.stdout
    assert "…" not in result.stdout.split("┡")[1].split("└")[0]
