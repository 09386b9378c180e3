"""The results schema is the contract: it must accept what the payload writes and reject drift."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from keras_bench.hostinfo import GpuInfo, HostInfo, SoftwareInfo
from keras_bench.results import (
    SCHEMA_PATH,
    ErrorEntry,
    Sample,
    Timings,
    build_document,
    metric_names,
    validate_document,
)

REQUIRED_KEYS = ["schema_version", "run_id", "suite", "host", "software", "samples", "timings", "errors"]


@pytest.fixture
def document() -> dict[str, Any]:
    built: dict[str, Any] = build_document(
        run_id="r-1",
        suite="smoke",
        host=HostInfo("box", "AMD EPYC", 2, [GpuInfo("NVIDIA H200", 143771.0, "570.86.15")]),
        software=SoftwareInfo("3.11.7", "3.15.1", "tensorflow", "2.21.0", None, "2.4.6"),
        params={"epochs": 10},
        samples=[Sample("train_throughput", "images_per_sec", 123.4, "images/s", {"model": "small_cnn"})],
        timings=Timings("2026-11-28T17:57:03.123Z", "2026-11-28T17:57:13.456Z", 3.0, 0.2, 6.0, 10.3),
        errors=[ErrorEntry("train", "RuntimeError", "boom")],
    )
    return built


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def test_built_document_validates(document: dict[str, Any]) -> None:
    assert validate_document(document) == []


def test_metric_list_is_the_documented_closed_list() -> None:
    assert metric_names() == {
        "images_per_sec", "images_per_sec_min", "images_per_sec_max", "images_per_sec_cv", "images_per_sec_repeat",
        "step_time_ms_mean", "step_time_ms_p50", "step_time_ms_p90", "step_time_ms_stdev",
        "accuracy", "loss", "time_to_accuracy_s", "epochs_to_accuracy", "epochs", "model_bytes",
        "model_bytes_gzip", "latency_ms_p50", "latency_ms_p90", "sparsity", "seconds", "scaling_efficiency",
        "accuracy_delta",
    }  # fmt: skip


def test_unknown_metric_is_rejected(document: dict[str, Any], schema_validator: Any) -> None:
    document["samples"][0]["metric"] = "frames_per_sec"
    assert not schema_validator.is_valid(document)
    assert any("frames_per_sec" in problem for problem in validate_document(document))


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_required_key_is_rejected(key: str, document: dict[str, Any], schema_validator: Any) -> None:
    del document[key]
    assert not schema_validator.is_valid(document)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d.update(schema_version=2), id="schema_version-2"),
        pytest.param(lambda d: d.update(extra=1), id="unknown-top-level-key"),
        pytest.param(lambda d: d["samples"][0].update(value=None), id="null-value"),
        pytest.param(lambda d: d["samples"][0]["metadata"].update(layers=[1, 2]), id="nested-metadata"),
        pytest.param(lambda d: d["timings"].update(started_at="yesterday"), id="bad-timestamp"),
        pytest.param(lambda d: d["timings"].pop("compute_s"), id="missing-compute_s"),
        pytest.param(lambda d: d["errors"][0].pop("stage"), id="error-without-stage"),
        pytest.param(lambda d: d["host"]["gpus"][0].pop("driver"), id="gpu-without-driver"),
        pytest.param(
            lambda d: d.update(utilisation=[{"t": 0.0, "gpu": 0, "util_pct": 101, "mem_used_mib": 1, "power_w": None}]),
            id="utilisation-over-100",
        ),
    ],
)
def test_schema_rejects_drift(mutate: Any, document: dict[str, Any], schema_validator: Any) -> None:
    broken = copy.deepcopy(document)
    mutate(broken)
    assert not schema_validator.is_valid(broken)


def test_utilisation_rows_in_the_documented_shape_are_accepted(document: dict[str, Any], schema_validator: Any) -> None:
    document["utilisation"] = [{"t": 1.5, "gpu": 0, "util_pct": 97.0, "mem_used_mib": 20480, "power_w": 350.5}]
    assert schema_validator.is_valid(document)


def test_nan_passes_json_schema_so_validate_document_catches_it(
    document: dict[str, Any], schema_validator: Any
) -> None:
    document["samples"][0]["value"] = float("nan")
    assert schema_validator.is_valid(document)  # why the payload checks finiteness itself
    assert validate_document(document) == ["/samples/0/value: nan is not a finite number"]
