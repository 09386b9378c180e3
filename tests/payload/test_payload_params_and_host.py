"""Param resolution, suite-document parsing, host facts and the cheap-import promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keras_bench.errors import ParamError, SuiteDocumentError
from keras_bench.hostinfo import GpuInfo, parse_nvidia_smi_csv, query_gpus, read_cpu_model
from keras_bench.params import resolve_params
from keras_bench.suite_document import parse_suite_document
from keras_bench.suites import SUITES

SMOKE_SPECS = SUITES["smoke"].params


def test_missing_params_take_the_defaults() -> None:
    effective = resolve_params(SMOKE_SPECS, {"epochs": 2})
    assert effective == {
        "model": "small_cnn",
        "epochs": 2,
        "batch_size": 32,
        "learning_rate": 0.001,
        "dropout": 0.25,
        "warmup_steps": 5,
        "steps_per_execution": 5,
        "inference_repeats": 3,
        "seed": 0,
    }


def test_an_integer_learning_rate_becomes_a_float() -> None:
    effective = resolve_params(SMOKE_SPECS, {"learning_rate": 1})
    assert effective["learning_rate"] == 1.0
    assert isinstance(effective["learning_rate"], float)


def test_unknown_params_are_reported_before_bad_values() -> None:
    with pytest.raises(ParamError, match="^param 'zzz': unknown parameter"):
        resolve_params(SMOKE_SPECS, {"epochs": -1, "zzz": 1})


def test_suite_document_without_params_means_all_defaults() -> None:
    document = parse_suite_document({"schema_version": 1, "suite": "smoke", "run_id": "r-9"}, SUITES)
    assert (document.suite, document.run_id, document.params) == ("smoke", "r-9", {})


def test_suite_document_version_true_is_not_version_1() -> None:
    with pytest.raises(SuiteDocumentError, match="received true"):
        parse_suite_document({"schema_version": True, "suite": "smoke", "run_id": "r"}, SUITES)


def test_nvidia_smi_rows_become_gpus_with_unreported_fields_as_none() -> None:
    text = "NVIDIA H200, 143771, 570.86.15\nNVIDIA A10G, [N/A], 535.104.05\n\n"
    assert parse_nvidia_smi_csv(text) == [
        GpuInfo("NVIDIA H200", 143771.0, "570.86.15"),
        GpuInfo("NVIDIA A10G", None, "535.104.05"),
    ]


def test_no_nvidia_smi_on_path_means_no_gpus() -> None:
    def never_run(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise AssertionError("nvidia-smi must not run when it is not on PATH")

    assert query_gpus(which=lambda name: None, run=never_run) == []


def test_failing_nvidia_smi_means_no_gpus_and_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    def failing(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 9, "", "NVIDIA-SMI has failed: driver/library mismatch")

    assert query_gpus(which=lambda name: "/usr/bin/nvidia-smi", run=failing) == []
    assert "driver/library mismatch" in capsys.readouterr().err


def test_hung_nvidia_smi_times_out_to_no_gpus() -> None:
    def hangs(args: list[str], *, timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert timeout > 0
        raise subprocess.TimeoutExpired(args, timeout)

    assert query_gpus(which=lambda name: "/usr/bin/nvidia-smi", run=hangs) == []


def test_cpu_model_comes_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\n", encoding="utf-8")
    assert read_cpu_model(cpuinfo) == "AMD EPYC 9654 96-Core Processor"


def test_importing_the_cli_imports_neither_keras_nor_a_backend(payload_env: dict[str, str]) -> None:
    probe = (
        "import sys, keras_bench.cli, keras_bench.suites; "
        "heavy = sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch', 'sklearn') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], env=payload_env, capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == ""
