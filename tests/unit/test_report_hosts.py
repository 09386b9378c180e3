"""Reports of runs over several machines: a row per host, a total per run, and each priced by its own machines."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from orchestrator import api
from orchestrator.cost import CostLine
from orchestrator.report.frame import samples_frame, summary_frame
from orchestrator.report.html import render_html
from orchestrator.report.render import render_text, rich_table, write_parquet
from orchestrator.store import Store

RECIPE = {"model": "cnn", "batch_size": 64, "precision": "float32", "gpus": 1}


def _document(train: float, accuracy: float, **recipe: Any) -> dict[str, Any]:
    metadata = {**RECIPE, **recipe}
    samples = [
        {"benchmark": "train_throughput", "metric": "images_per_sec", "value": train, "unit": "images/s",
         "metadata": metadata},
        {"benchmark": "inference_throughput", "metric": "images_per_sec", "value": train * 4, "unit": "images/s",
         "metadata": metadata},
        {"benchmark": "train", "metric": "accuracy", "value": accuracy, "unit": "fraction", "metadata": metadata},
        {"benchmark": "train", "metric": "time_to_accuracy_s", "value": 1800.0, "unit": "s", "metadata": metadata},
    ]
    return {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}


def _cost(machine_id: str, price_per_hour: float, billed_seconds: float = 3600.0) -> CostLine:
    return CostLine(component="compute", seconds=billed_seconds, billed_seconds=billed_seconds,
                    price_per_hour=price_per_hour, amount_usd=price_per_hour * billed_seconds / 3600.0,
                    rule="per_second", machine_id=machine_id)


def _record(store: Store, run_id: str, results: dict[str, dict[str, Any]], costs: list[CostLine],
            name: str | None = None) -> None:
    store.create_run(run_id, provider="rented", suite="throughput", name=name, spec={})
    store.finish_run(run_id, state="succeeded", duration_s=3600.0, error=None, log_tail=None, results=results,
                     costs=costs)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A two-box run (box0 100 img/s at $3.60/h, box1 300 img/s at $1.80/h) and a one-box run after it."""
    with Store(tmp_path) as store:
        _record(store, "r-two", {"box0": _document(100.0, 0.90), "box1": _document(300.0, 0.94)},
                [_cost("box0", 3.6), _cost("box1", 1.8)], name="two boxes")
        _record(store, "r-one", {"localhost": _document(100.0, 0.92)}, [_cost("localhost", 3.6)])
    return tmp_path


def _rows(summary: pd.DataFrame, run_id: str) -> dict[str, pd.Series]:
    return {str(row["host"]): row for _, row in summary[summary["run_id"] == run_id].iterrows()}


def test_a_two_host_run_has_a_row_per_host_then_a_total_that_sums_throughput(home: Path) -> None:
    _, summary = api.report_frames_derived(home=home)
    rows = _rows(summary, "r-two")
    assert list(rows) == ["box0", "box1", "all 2"]
    assert summary.loc[summary["run_id"] == "r-two", "hosts"].tolist() == [1, 1, 2]
    total = rows["all 2"]
    assert total["train_images_per_sec"] == pytest.approx(400.0)  # 100 + 300, not their mean
    assert total["inference_images_per_sec"] == pytest.approx(1600.0)
    assert total["test_accuracy"] == pytest.approx(0.92)  # accuracy is the median over the hosts
    assert total["train.time_to_accuracy_s"] == pytest.approx(1800.0)
    assert total["gpus"] == 2


def test_the_total_is_priced_at_both_machines_and_its_images_per_dollar_follow(home: Path) -> None:
    _, summary = api.report_frames_derived(home=home)
    total = _rows(summary, "r-two")["all 2"]
    assert total["price_per_hour"] == pytest.approx(5.4)  # $3.60 + $1.80 an hour, not their mean
    assert total["cost_usd"] == pytest.approx(5.4)
    assert total["train_images_per_usd"] == pytest.approx(400 * 3600 / 5.4)
    assert total["usd_per_million_train_images"] == pytest.approx(5.4 / (400 * 3600) * 1e6)
    assert total["inference_images_per_usd"] == pytest.approx(1600 * 3600 / 5.4)
    assert total["train_images_per_sec_per_gpu"] == pytest.approx(200.0)  # 400 img/s over the GPUs of both
    assert total["cost_to_accuracy_usd"] == pytest.approx(0.5 * 5.4)


def test_each_host_row_carries_its_own_machines_figures(home: Path) -> None:
    _, summary = api.report_frames_derived(home=home)
    rows = _rows(summary, "r-two")
    box0, box1 = rows["box0"], rows["box1"]
    assert (box0["train_images_per_sec"], box1["train_images_per_sec"]) == (100.0, 300.0)
    assert (box0["price_per_hour"], box1["price_per_hour"]) == (pytest.approx(3.6), pytest.approx(1.8))
    assert (box0["cost_usd"], box1["cost_usd"]) == (pytest.approx(3.6), pytest.approx(1.8))
    assert box0["train_images_per_usd"] == pytest.approx(100 * 3600 / 3.6)
    assert box1["train_images_per_usd"] == pytest.approx(300 * 3600 / 1.8)
    assert box1["usd_per_million_train_images"] == pytest.approx(1.8 / (300 * 3600) * 1e6)
    assert box1["train_images_per_sec_per_gpu"] == pytest.approx(300.0)
    assert box0["cost_to_accuracy_usd"] == pytest.approx(0.5 * 3.6)


def test_speedup_compares_a_host_by_itself_and_the_total_as_the_run(home: Path) -> None:
    _, summary = api.report_frames_derived(home=home, baseline="r-one")
    rows = _rows(summary, "r-two")
    assert rows["all 2"]["speedup_over_baseline"] == pytest.approx(4.0)
    assert rows["box1"]["speedup_over_baseline"] == pytest.approx(3.0)
    assert rows["box0"]["speedup_over_baseline"] == pytest.approx(1.0)
    # Against the two-box run, the baseline is its total (400 img/s), not one of its boxes.
    _, summary = api.report_frames_derived(home=home, baseline="r-two")
    assert _rows(summary, "r-one")["localhost"]["speedup_over_baseline"] == pytest.approx(0.25)


def test_a_single_host_run_keeps_one_row_per_recipe_with_its_host(home: Path) -> None:
    _, summary = api.report_frames_derived(home=home)
    rows = _rows(summary, "r-one")
    assert list(rows) == ["localhost"]
    assert rows["localhost"]["hosts"] == 1
    assert rows["localhost"]["price_per_hour"] == pytest.approx(3.6)
    assert rows["localhost"]["train_images_per_usd"] == pytest.approx(100 * 3600 / 3.6)


def test_the_samples_view_names_each_samples_host(home: Path) -> None:
    samples, _ = api.report_frames_derived(home=home)
    two = samples[samples["run_id"] == "r-two"]
    assert set(two["host"]) == {"box0", "box1"}
    assert two.loc[two["host"] == "box1", "value"].tolist() == [300.0, 1200.0, 0.94, 1800.0]
    assert "host" in render_text(samples, "md").splitlines()[0]
    assert render_text(samples, "csv").splitlines()[0].split(",")[:2] == ["run_id", "name"]
    assert "host" in render_text(samples, "csv").splitlines()[0].split(",")
    assert {record["host"] for record in json.loads(render_text(samples, "json"))} == {"box0", "box1", "localhost"}


def test_every_format_of_the_summary_shows_the_host(home: Path, tmp_path: Path) -> None:
    from rich.console import Console

    _, summary = api.report_frames_derived(home=home)
    markdown = render_text(summary, "md")
    assert markdown.splitlines()[0].startswith("| run ") and "| host " in markdown.splitlines()[0]
    assert "all 2" in markdown and "box1" in markdown
    assert [record["host"] for record in json.loads(render_text(summary, "json"))] == \
        ["box0", "box1", "all 2", "localhost"]
    assert "host" in render_text(summary, "csv").splitlines()[0].split(",")
    console = Console(width=250, record=True, color_system=None)
    console.print(rich_table(summary, "report"))
    assert "all 2" in console.export_text()
    write_parquet(summary, tmp_path / "summary.parquet")
    assert pd.read_parquet(tmp_path / "summary.parquet")["host"].tolist() == ["box0", "box1", "all 2", "localhost"]


def test_a_failed_attempts_machine_counts_in_the_runs_cost_but_gets_no_row(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        # box9 was launched first and lost to a capacity error; box0 and box1 ran the payload.
        _record(store, "r-retry", {"box0": _document(100.0, 0.9), "box1": _document(300.0, 0.9)},
                [_cost("box9", 2.0, billed_seconds=360.0), _cost("box0", 3.6), _cost("box1", 1.8)])
        _record(store, "r-retry-one", {"box0": _document(100.0, 0.9)},
                [_cost("box9", 2.0, billed_seconds=360.0), _cost("box0", 3.6)])
    _, summary = api.report_frames_derived(home=tmp_path)
    rows = _rows(summary, "r-retry")
    assert list(rows) == ["box0", "box1", "all 2"]
    assert rows["all 2"]["cost_usd"] == pytest.approx(3.6 + 1.8 + 0.2)  # the failed attempt is paid for too
    assert rows["all 2"]["price_per_hour"] == pytest.approx(5.4)  # the machines that measured
    assert rows["box0"]["cost_usd"] == pytest.approx(3.6)
    single = _rows(summary, "r-retry-one")
    assert list(single) == ["box0"]
    assert single["box0"]["cost_usd"] == pytest.approx(3.8)
    assert single["box0"]["price_per_hour"] == pytest.approx(3.6)


def test_an_old_stores_samples_without_a_host_are_one_unnamed_host(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        _record(store, "r-old", {"m": _document(100.0, 0.9)}, [_cost("", 3.6)])
    # A store written before samples kept their host has NULL there.
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE samples SET host = NULL")
    samples, summary = api.report_frames_derived(home=tmp_path)
    assert samples["host"].isna().all()
    assert len(summary) == 1 and summary["host"].isna().all() and summary["hosts"].tolist() == [1]
    assert summary["train_images_per_sec"].iloc[0] == 100.0
    assert summary["price_per_hour"].iloc[0] == pytest.approx(3.6)  # the run's own price


def test_the_html_charts_plot_a_multi_host_run_once_by_its_total(home: Path) -> None:
    samples, summary = api.report_frames_derived(home=home)
    page = render_html(samples, summary)
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    bars = data["charts"]["images_per_dollar"]["bars"]
    two = [value for label, value in bars if label.startswith("two boxes")]
    assert two == [pytest.approx(400 * 3600 / 5.4)]
    assert len(bars) == 2  # the two-box run's total and the one-box run
    prices = [s["points"][0] for s in data["charts"]["throughput_vs_price"]["series"]
              if s["label"].startswith("two boxes")]
    assert prices == [[pytest.approx(5.4), pytest.approx(400.0)]]
    assert [row["host"] for row in data["summary"]] == ["box0", "box1", "all 2", "localhost"]


def test_samples_frame_and_summary_agree_on_the_hosts(home: Path) -> None:
    with Store(home) as store:
        summary = summary_frame(samples_frame(store, ["r-two", "r-one"]))
    assert summary["host"].tolist() == ["box0", "box1", "all 2", "localhost"]
    assert summary["train_images_per_sec"].tolist() == [100.0, 300.0, 400.0, 100.0]


def test_break_even_takes_each_hosts_figure_with_its_own_gpu(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        box0, box1 = _document(100.0, 0.9), _document(300.0, 0.9)
        box0["host"] = {"gpus": [{"name": "Tesla T4"}]}
        box1["host"] = {"gpus": [{"name": "NVIDIA A100-SXM4-40GB"}]}
        _record(store, "r-mixed", {"box0": box0, "box1": box1}, [_cost("box0", 0.5), _cost("box1", 3.0)])
    measured = api.measured_throughput(["r-mixed"], home=tmp_path)
    assert sorted((m.gpu, m.images_per_sec_per_gpu) for m in measured) == [
        ("NVIDIA A100-SXM4-40GB", 300.0), ("Tesla T4", 100.0)]  # not 200 a GPU on one of them


def test_the_accuracy_chart_draws_a_curve_per_host_of_a_multi_host_run(tmp_path: Path) -> None:
    def curve(accuracies: list[float]) -> dict[str, Any]:
        document = _document(100.0, accuracies[-1])
        document["samples"] += [
            {"benchmark": "train_curve", "metric": "accuracy", "value": value, "unit": "fraction",
             "metadata": {**RECIPE, "epoch": epoch, "elapsed_s": 10.0 * epoch}}
            for epoch, value in enumerate(accuracies, start=1)
        ]
        return document

    with Store(tmp_path) as store:
        _record(store, "r-two", {"box0": curve([0.5, 0.8]), "box1": curve([0.6, 0.9])},
                [_cost("box0", 1.0), _cost("box1", 1.0)], name="two boxes")
    samples, summary = api.report_frames_derived(home=tmp_path)
    page = render_html(samples, summary)
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    curves = {s["label"]: s["points"] for s in data["charts"]["accuracy_vs_time"]["series"]}
    assert curves == {"two boxes box0 cnn": [[10.0, 0.5], [20.0, 0.8]],
                      "two boxes box1 cnn": [[10.0, 0.6], [20.0, 0.9]]}


def _launched(store: Store, run_id: str, attempt: int, *machines: tuple[str, str]) -> None:
    """Records machines (id, instance type) launched by one attempt of a run, as the lifecycle does."""
    from datetime import UTC, datetime

    from orchestrator.machine import Access, Environment, Machine, Placement

    row = store.record_launch_request(run_id, "aws", {}, attempt=attempt)
    store.record_machines(row, [
        Machine(run_id=run_id, id=machine_id, provider="aws", placement=Placement(provider="aws", instance_type=kind),
                access=Access(), environment=Environment(), run_dir="runs", launched_at=datetime.now(UTC))
        for machine_id, kind in machines])


def test_each_row_names_its_machine_type_and_a_total_names_its_hosts_types(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        _record(store, "r-two", {"i-a": _document(100.0, 0.90), "i-b": _document(300.0, 0.94)},
                [_cost("i-a", 3.6), _cost("i-b", 1.8), _cost("i-gone", 0.9, 60.0)])
        _launched(store, "r-two", 1, ("i-gone", "p3.2xlarge"))  # a failed first attempt: paid for, measured nothing
        _launched(store, "r-two", 2, ("i-a", "g5.xlarge"), ("i-b", "g4dn.xlarge"))
        _record(store, "r-old", {"localhost": _document(100.0, 0.92)}, [_cost("localhost", 3.6)])  # no machines
    _, summary = api.report_frames_derived(home=tmp_path)
    rows = _rows(summary, "r-two")
    assert rows["i-a"]["machine_type"] == "g5.xlarge" and rows["i-b"]["machine_type"] == "g4dn.xlarge"
    assert rows["all 2"]["machine_type"] == "g4dn.xlarge, g5.xlarge"  # not the failed attempt's p3.2xlarge
    assert pd.isna(_rows(summary, "r-old")["localhost"]["machine_type"])
    assert "machine" in render_text(summary, fmt="md")


def test_a_machine_billed_nothing_is_priced_at_its_rate(tmp_path: Path) -> None:
    # Azure bills whole minutes: a 50 s run costs $0, yet its machine's images per dollar are at its hourly rate.
    line = replace(_cost("vm-1", 0.526, billed_seconds=0.0), seconds=50.0, rule="per_minute_full")
    with Store(tmp_path) as store:
        _record(store, "r-short", {"vm-1": _document(100.0, 0.9)}, [line])
    _, summary = api.report_frames_derived(home=tmp_path)
    [row] = [row for _, row in summary.iterrows()]
    assert row["cost_usd"] == 0.0 and row["price_per_hour"] == pytest.approx(0.526)
    assert row["train_images_per_usd"] == pytest.approx(100.0 * 3600 / 0.526)
