"""Published reference rows say what they measured, and a speed-up over one is taken like for like."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from orchestrator import api
from orchestrator.report.metrics import compare_with_baseline, speedup_over_baseline
from orchestrator.report.references import load_references, model_key, model_variant, precision_key, with_references
from orchestrator.report.render import render_text, rich_table
from orchestrator.store import Store


def _run(model: str = "resnet50", precision: str | None = "float32", throughput: float = 1066.0) -> pd.DataFrame:
    """One Keras run's summary row, as the throughput suite records it."""
    return pd.DataFrame({"run_id": ["r-1"], "model": [model], "precision": [precision], "batch_size": [64],
                         "data": ["synthetic"], "backend": ["tensorflow"], "xla": [False],
                         "train_images_per_sec": [throughput]})


def test_every_reference_says_framework_precision_batch_data_and_source() -> None:
    references = load_references()
    assert list(references["run_id"]) == [f"ref-{n:02d}" for n in range(1, 21)]  # ids users and tests rely on
    rows = references.set_index("run_id")
    assert rows.loc["ref-01", "data"] == "synthetic" and rows.loc["ref-01", "suite"] == "training"
    assert set(references["data"]) == {"synthetic", "not stated"}
    assert set(references.loc[references["data"] == "synthetic", "framework"]) == {"TensorFlow 1 tf_cnn_benchmarks"}
    assert (rows.loc["ref-13", "precision"], rows.loc["ref-13", "precision_published"]) == ("mixed_float16", "fp16")
    assert rows.loc["ref-06", "precision"] == "mixed_float16" and bool(rows.loc["ref-06", "xla"])
    assert rows.loc["ref-09", "precision"] == "tf32"  # TF32 is not float32
    assert rows.loc["ref-05", "precision"] == "float32" and bool(rows.loc["ref-05", "xla"])
    assert not bool(rows.loc["ref-17", "xla"]) and rows.loc["ref-18", "batch_size"] == 640
    assert references["framework"].str.len().gt(0).all() and references["source"].str.len().gt(0).all()
    assert rows.loc["ref-16", "suite"] == "inference"


def test_a_references_file_without_data_reads_as_not_stated(tmp_path: Path) -> None:
    path = tmp_path / "refs.csv"
    path.write_text("id,gpu,model,workload,framework,precision,batch_per_gpu,gpus,images_per_sec,source,notes,"
                    "reference\nref-x,T4,ResNet-50,training,PyTorch,BF16,,1,500,a page,,true\n")
    row = load_references(path).iloc[0]
    assert (row["data"], row["precision"], row["precision_published"]) == ("not stated", "mixed_bfloat16", "BF16")


@pytest.mark.parametrize(("name", "key"), [("ResNet-50", "resnet50"), ("resnet50", "resnet50"),
                                           ("ResNet-50 v1.5", "resnet50"), ("mobilenet_v2", "mobilenetv2"),
                                           ("MobileNet V2", "mobilenetv2"), ("small_cnn", "smallcnn")])
def test_runs_and_references_name_a_model_by_one_key(name: str, key: str) -> None:
    assert model_key(name) == key


def test_the_v1_5_variant_is_resnet50_with_a_caveat() -> None:
    assert model_variant("ResNet-50 v1.5") == ("resnet50", "v1.5 variant")
    assert model_variant("ResNet-50") == ("resnet50", None)


@pytest.mark.parametrize(("published", "payload"), [("fp32", "float32"), ("fp32+XLA", "float32"),
                                                    ("AMP+XLA", "mixed_float16"), ("fp16", "mixed_float16"),
                                                    ("TF32+XLA", "tf32"), ("bf16", "mixed_bfloat16"),
                                                    ("mixed_float16", "mixed_float16"), ("float32", "float32")])
def test_precisions_are_put_in_the_payloads_words(published: str, payload: str) -> None:
    assert precision_key(published) == payload


def test_a_float32_run_has_no_speedup_over_an_fp16_reference_and_says_why() -> None:
    speedup, caveat = compare_with_baseline(with_references(_run()), "ref-13")
    assert math.isnan(speedup.iloc[0])
    assert caveat.iloc[0] == ("not like-for-like: baseline ref-13 measured ResNet-50 fp16 (PyTorch (Lambda "
                              "deeplearning-benchmark)), this run resnet50 float32 (keras-tensorflow)")


def test_a_float32_run_over_an_fp32_reference_of_its_model_has_a_speedup_and_its_differences() -> None:
    speedup, caveat = compare_with_baseline(with_references(_run(throughput=1753.0)), "ref-18")
    assert speedup.iloc[0] == pytest.approx(1.0)  # resnet50 matches ResNet-50
    assert caveat.iloc[0] == ("ref-18 vs this run: framework PyTorch (Lambda deeplearning-benchmark) vs "
                              "keras-tensorflow; batch 640 vs 64; data not stated vs synthetic")


def test_a_run_without_precision_is_float32_and_tf32_is_not() -> None:
    run = _run(precision=None, throughput=909.0)
    assert speedup_over_baseline(with_references(run), "ref-17").iloc[0] == pytest.approx(909 / 1066)
    assert math.isnan(speedup_over_baseline(with_references(run), "ref-09").iloc[0])  # TF32+XLA
    mixed = _run(precision="mixed_float16", throughput=2616.0)
    assert speedup_over_baseline(with_references(mixed), "ref-14").iloc[0] == pytest.approx(1.0)


def test_the_v1_5_reference_is_compared_with_its_variant_named() -> None:
    speedup, caveat = compare_with_baseline(with_references(_run(throughput=824.0)), "ref-05")
    assert speedup.iloc[0] == pytest.approx(2.0)
    assert caveat.iloc[0].startswith("ref-05 vs this run: model ResNet-50 v1.5 vs resnet50; framework ")
    assert "xla true vs false" in caveat.iloc[0]


def test_speedup_over_a_run_takes_the_pairs_both_measured_and_names_the_rest() -> None:
    summary = pd.DataFrame({
        "run_id": ["r-a", "r-a", "r-b", "r-b", "r-c"],
        "model": ["cnn", "resnet50", "cnn", "resnet50", "cnn"],
        "precision": ["float32", "float32", "float32", "mixed_float16", "mixed_float16"],
        "train_images_per_sec": [100.0, 50.0, 300.0, 200.0, 400.0],
    })
    speedup, caveat = compare_with_baseline(summary, "r-a")
    assert speedup.iloc[0] == speedup.iloc[1] == pytest.approx(1.0) and caveat.iloc[0] is None
    assert speedup.iloc[2] == speedup.iloc[3] == pytest.approx(3.0)  # cnn float32 only
    assert caveat.iloc[2] == "r-a vs this run: not compared: resnet50 mixed_float16 (not stated)"
    assert math.isnan(speedup.iloc[4]) and caveat.iloc[4].startswith("not like-for-like: baseline r-a measured ")


def test_the_report_shows_the_caveat_whenever_a_speedup_has_one(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store.create_run("r-1", provider="local", suite="throughput", name=None, spec={})
        sample = {"benchmark": "train_throughput", "metric": "images_per_sec", "value": 1753.0, "unit": "images/s",
                  "metadata": {"model": "resnet50", "batch_size": 64, "precision": "float32", "data": "synthetic",
                               "backend": "tensorflow"}}
        store.finish_run("r-1", state="succeeded", duration_s=60.0, error=None, log_tail=None, costs=[],
                         results={"m": {"host": {}, "software": {}, "timings": {}, "errors": [],
                                        "samples": [sample]}})
    _, summary = api.report_frames_derived(home=tmp_path, references=True, baseline="ref-18")
    markdown = render_text(summary, "md")
    header = [cell.strip() for cell in markdown.splitlines()[0].split("|")]
    assert header.index("speed-up caveat") == header.index("speed-up") + 1
    own = next(line for line in markdown.splitlines() if line.startswith("| r-1"))
    assert "1.00" in own and "batch 640 vs 64" in own
    # However narrow the terminal, the speed-up is not shown without its caveat column.
    for width in range(60, 260, 7):
        buffer = io.StringIO()
        Console(file=buffer, width=width, color_system=None).print(rich_table(summary, "t"))
        head = buffer.getvalue().splitlines()[2]
        assert "speed-up" not in head.replace("speed-up caveat", "") or "speed-up caveat" in head, width
