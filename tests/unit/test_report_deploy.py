"""The deploy suite's trade-off table, from hand-made samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.report.deploy import tradeoff_frame
from orchestrator.report.frame import samples_frame, summary_frame
from orchestrator.store import Store


def _deploy(store: Store, run_id: str, variants: dict[str, dict[str, float]], fmt: str = "tflite") -> None:
    store.create_run(run_id, provider="local", suite="deploy", name=None, spec={})
    samples = [
        {"benchmark": "deploy", "metric": metric, "value": value, "unit": "-",
         "metadata": {"variant": variant, "format": "keras" if variant == "keras_int8" else fmt, "model": "small_cnn",
                      "data": "digits", "latency_runs": 50}}
        for variant, figures in variants.items() for metric, value in figures.items()
    ]
    samples.append({"benchmark": "train", "metric": "accuracy", "value": 0.97, "unit": "fraction",
                    "metadata": {"model": "small_cnn"}})
    _finish(store, run_id, samples)


def _finish(store: Store, run_id: str, samples: list[dict[str, object]]) -> None:
    store.finish_run(run_id, state="succeeded", duration_s=10.0, error=None, log_tail=None,
                     results={"m": {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}},
                     costs=[])


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path)
    _deploy(store, "r-1", {
        "float32": {"model_bytes": 400_000, "model_bytes_gzip": 370_000, "latency_ms_p50": 0.20, "accuracy": 0.975,
                    "accuracy_delta": 0.0, "images_per_sec": 9000},
        "int8": {"model_bytes": 110_000, "model_bytes_gzip": 90_000, "latency_ms_p50": 0.12, "accuracy": 0.972,
                 "accuracy_delta": -0.3, "images_per_sec": 15000},
        "pruned_75": {"model_bytes": 400_000, "model_bytes_gzip": 120_000, "accuracy": 0.969,
                      "accuracy_delta": -0.6, "sparsity": 0.751},
        "keras_int8": {"model_bytes": 300_000, "accuracy": 0.975},
    })
    return store


def test_one_row_per_variant_in_the_order_written_with_sizes_against_float32(store: Store) -> None:
    table = tradeoff_frame(samples_frame(store, ["r-1"]))
    assert table["variant"].tolist() == ["float32", "int8", "pruned_75", "keras_int8"]
    assert table["format"].tolist() == ["tflite", "tflite", "tflite", "keras"]
    row = table.set_index("variant")
    assert row.loc["int8", "size ×"] == pytest.approx(110 / 400)
    assert row.loc["pruned_75", "gzip ×"] == pytest.approx(120 / 370)
    assert row.loc["pruned_75", "sparsity"] == pytest.approx(0.751)
    assert row.loc["float32", "size ×"] == 1.0
    assert row["p50 ms"].isna()["keras_int8"]  # not measured: blank, not zero


def test_no_deploy_samples_is_an_empty_table_with_the_columns(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create_run("r-2", provider="local", suite="smoke", name=None, spec={})
    _finish(store, "r-2", [{"benchmark": "train", "metric": "accuracy", "value": 0.9, "unit": "fraction",
                            "metadata": {}}])
    table = tradeoff_frame(samples_frame(store, ["r-2"]))
    assert table.empty and "gzip ×" in table.columns


def test_the_summary_keeps_variants_apart(store: Store) -> None:
    summary = summary_frame(samples_frame(store, ["r-1"]))
    variants = summary["variant"].dropna().tolist()
    assert sorted(variants) == ["float32", "int8", "keras_int8", "pruned_75"]


def test_two_hosts_figures_stay_apart_each_against_its_own_float32(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create_run("r-2", provider="rented", suite="deploy", name=None, spec={})
    documents = {
        host: {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": [
            {"benchmark": "deploy", "metric": metric, "value": value, "unit": "-",
             "metadata": {"variant": variant, "format": "tflite", "model": "small_cnn"}}
            for variant, figures in variants.items() for metric, value in figures.items()
        ]}
        for host, variants in {
            "box0": {"float32": {"model_bytes": 400_000, "latency_ms_p50": 0.20},
                     "int8": {"model_bytes": 100_000, "latency_ms_p50": 0.10}},
            "box1": {"float32": {"model_bytes": 400_000, "latency_ms_p50": 0.60},
                     "int8": {"model_bytes": 200_000, "latency_ms_p50": 0.30}},
        }.items()
    }
    store.finish_run("r-2", state="succeeded", duration_s=10.0, error=None, log_tail=None, results=documents,
                     costs=[])
    table = tradeoff_frame(samples_frame(store, ["r-2"]))
    assert list(zip(table["host"], table["variant"], strict=True)) == [
        ("box0", "float32"), ("box0", "int8"), ("box1", "float32"), ("box1", "int8")]
    assert table["p50 ms"].tolist() == [0.20, 0.10, 0.60, 0.30]  # not a median over the two boxes
    assert table["size ×"].tolist() == [1.0, 0.25, 1.0, 0.5]
