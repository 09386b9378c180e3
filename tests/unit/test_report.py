"""The report frames and renderers on a hand-made store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
            costs=[{"machine_id": "m", "component": "compute", "seconds": 10.0, "billed_seconds": 10.0,
                    "price_per_hour": 36.0, "amount_usd": 0.1, "rule": "per_second"}],
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
