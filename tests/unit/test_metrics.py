"""Derived report metrics, each on a hand-made summary frame with figures worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from orchestrator import api
from orchestrator.cost import CostLine
from orchestrator.errors import SpecError
from orchestrator.report.metrics import (
    cost_to_accuracy_usd,
    images_per_sec_per_gpu,
    images_per_usd,
    price_per_hour,
    scaling_efficiency,
    speedup_over_baseline,
    usd_per_million_images,
    with_derived_metrics,
)
from orchestrator.report.references import load_references, with_references
from orchestrator.store import Store

NAN = float("nan")


@pytest.fixture
def summary() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": ["r-a", "r-a", "r-b", "r-b", "r-c", "r-c", "r-c", "r-d"],
        "model": ["cnn", "resnet", "cnn", "resnet", "cnn", "cnn", "cnn", "cnn"],
        "replicas": [None, None, None, None, 1, 2, 4, None],
        "gpus": [NAN, NAN, 4, 4, NAN, NAN, NAN, 2],
        "price_per_hour": [3.6, 3.6, 7.2, 7.2, 0.0, 0.0, 0.0, NAN],
        "cost_usd": [NAN] * 7 + [0.5],
        "duration_s": [NAN] * 7 + [1800.0],
        "train_images_per_sec": [100.0, 50.0, 300.0, 200.0, 100.0, 180.0, 320.0, 90.0],
        "inference_images_per_sec": [400.0, NAN, NAN, NAN, NAN, NAN, NAN, NAN],
        "train_throughput_per_gpu.images_per_sec": [NAN, NAN, 75.0, 50.0, NAN, NAN, NAN, NAN],
        "train.time_to_accuracy_s": [1800.0, NAN, NAN, NAN, NAN, NAN, NAN, NAN],
    })


def _values(series: pd.Series) -> list[float]:
    return [round(value, 6) if not math.isnan(value) else value for value in series.tolist()]


def test_price_per_hour_is_the_billed_price_else_cost_over_duration(summary: pd.DataFrame) -> None:
    assert _values(price_per_hour(summary))[:2] == [3.6, 3.6]
    assert price_per_hour(summary).iloc[7] == pytest.approx(1.0)  # $0.50 over half an hour


def test_images_per_sec_per_gpu_uses_the_payloads_figure_else_divides_by_gpus(summary: pd.DataFrame) -> None:
    assert _values(images_per_sec_per_gpu(summary)) == [100.0, 50.0, 75.0, 50.0, 100.0, 180.0, 320.0, 45.0]


def test_images_per_dollar_and_dollars_per_million_images(summary: pd.DataFrame) -> None:
    per_usd = images_per_usd(summary)
    assert per_usd.iloc[0] == pytest.approx(100_000.0)  # 100 img/s × 3600 s / $3.60
    assert per_usd.iloc[2] == pytest.approx(150_000.0)  # 300 × 3600 / 7.2
    assert math.isnan(per_usd.iloc[4])  # a free run has no images per dollar
    assert usd_per_million_images(summary).iloc[0] == pytest.approx(10.0)  # $3.60 / 360,000 images × 1e6
    assert usd_per_million_images(summary, "inference_images_per_sec").iloc[0] == pytest.approx(2.5)
    assert usd_per_million_images(summary).iloc[7] == pytest.approx(1.0 / (90 * 3600) * 1e6)


def test_cost_to_accuracy_is_hours_to_accuracy_times_price(summary: pd.DataFrame) -> None:
    costs = cost_to_accuracy_usd(summary)
    assert costs.iloc[0] == pytest.approx(1.8)  # 0.5 h × $3.60/h, DAWNBench-style
    assert costs.iloc[1:].isna().all()


def test_scaling_efficiency_is_recomputed_against_the_fewest_replicas(summary: pd.DataFrame) -> None:
    efficiency = scaling_efficiency(summary)
    assert _values(efficiency)[4:7] == [1.0, 0.9, 0.8]  # 180 / (2 × 100), 320 / (4 × 100)
    assert efficiency.iloc[:4].isna().all()


def test_scaling_efficiency_written_by_the_payload_passes_through(summary: pd.DataFrame) -> None:
    given = summary.assign(**{"train_throughput.scaling_efficiency": [NAN] * 5 + [0.95, NAN, NAN]})
    assert _values(scaling_efficiency(given))[4:7] == [1.0, 0.95, 0.8]


def test_speedup_is_the_geometric_mean_over_models_of_best_throughput_ratios(summary: pd.DataFrame) -> None:
    speedup = speedup_over_baseline(summary, "r-a")
    assert speedup.iloc[0] == pytest.approx(1.0)
    assert speedup.iloc[2] == speedup.iloc[3] == pytest.approx(math.sqrt(3.0 * 4.0))  # cnn ×3, resnet ×4
    assert speedup.iloc[4] == pytest.approx(3.2)  # cnn only: best 320 / 100
    with pytest.raises(SpecError, match="r-zz"):
        speedup_over_baseline(summary, "r-zz")


def test_with_derived_metrics_adds_every_column(summary: pd.DataFrame) -> None:
    derived = with_derived_metrics(summary, baseline="r-b")
    assert derived["train_images_per_usd"].iloc[0] == pytest.approx(100_000.0)
    assert derived["usd_per_million_inferences"].iloc[0] == pytest.approx(2.5)
    assert derived["cost_to_accuracy_usd"].iloc[0] == pytest.approx(1.8)
    assert derived["speedup_over_baseline"].iloc[0] == pytest.approx(1 / math.sqrt(12.0))
    assert derived["time_to_accuracy_s"].iloc[0] == 1800.0
    assert len(derived) == len(summary)


def test_references_carry_their_sources_and_sit_beside_the_runs(summary: pd.DataFrame) -> None:
    references = load_references()
    k80 = references[references["run_id"] == "ref-01"].iloc[0]
    assert k80["train_images_per_sec"] == pytest.approx(51.9) and k80["batch_size"] == 64
    assert "tensorflow/docs" in k80["source"] and bool(k80["reference"])
    eight = references[references["run_id"] == "ref-03"].iloc[0]
    assert eight["train_throughput_per_gpu.images_per_sec"] == pytest.approx(48.0)  # 384 images/s over 8 GPUs
    assert references["source"].str.len().gt(0).all() and references["reference"].all()
    assert math.isnan(references.loc[references["suite"] == "inference", "train_images_per_sec"].iloc[0])
    combined = with_references(summary, references)
    assert combined["reference"].tolist() == [False] * len(summary) + [True] * len(references)
    # Like for like: the runs' "cnn" is no published model, so no speed-up; a "resnet50" run is ResNet-50.
    assert speedup_over_baseline(combined, "ref-01").iloc[:len(summary)].isna().all()
    resnet = with_references(summary.assign(model=summary["model"].replace({"cnn": "resnet50"})), references)
    assert speedup_over_baseline(resnet, "ref-01").iloc[0] == pytest.approx(100 / 51.9)


def test_report_frames_derived_prices_runs_from_their_billed_costs_and_adds_references(tmp_path: Path) -> None:
    """A run without precision metadata is float32 (the payload's default), so ref-01 (fp32) is like for like in
    model and precision; its framework and data are not stated by the run, which the caveat says."""
    store = Store(tmp_path)
    sample = {"benchmark": "train_throughput", "metric": "images_per_sec", "value": 100.0, "unit": "images/s",
              "metadata": {"model": "ResNet-50", "batch_size": 64}}
    store.create_run("r-1", provider="local", suite="smoke", name=None, spec={})
    store.finish_run(
        "r-1", state="succeeded", duration_s=30.0, error=None, log_tail=None,
        results={"m": {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": [sample]}},
        costs=[CostLine(component="compute", seconds=5.0, billed_seconds=60.0, price_per_hour=0.9, amount_usd=0.015,
                        rule="aws_linux", machine_id="m")],
    )
    store.close()
    _, summary = api.report_frames_derived(home=tmp_path, references=True, baseline="ref-01")
    own = summary[~summary["reference"]].iloc[0]
    assert own["price_per_hour"] == pytest.approx(0.9)  # $0.015 over the 60 s billed, not the 30 s run
    assert own["train_images_per_usd"] == pytest.approx(400_000.0)  # 100 × 3600 / 0.9
    assert own["speedup_over_baseline"] == pytest.approx(100 / 51.9)  # against the K80 on ResNet-50
    assert own["baseline_caveat"] == "ref-01 vs this run: framework TensorFlow 1 tf_cnn_benchmarks vs not stated; " \
                                     "data synthetic vs not stated"  # batch 64 on both
    assert summary["reference"].sum() == len(load_references())


def test_scaling_efficiency_is_recomputed_within_each_host() -> None:
    # Two boxes of one run, each measured at 1 and 2 replicas; box1 is three times faster than box0.
    frame = pd.DataFrame({
        "run_id": ["r-a"] * 4, "host": ["box0", "box0", "box1", "box1"], "model": ["cnn"] * 4,
        "replicas": [1, 2, 1, 2], "train_images_per_sec": [100.0, 160.0, 300.0, 540.0],
    })
    assert _values(scaling_efficiency(frame)) == [1.0, 0.8, 1.0, 0.9]  # 160 / 200, 540 / 600
