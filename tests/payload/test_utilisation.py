"""The GPU utilisation sampler: real parsing and threading against a fake nvidia-smi placed first on PATH."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from keras_bench import cli, utilisation
from keras_bench.params import ParamValue
from keras_bench.recorder import RunRecorder
from keras_bench.suites.base import Suite
from keras_bench.utilisation import (
    GpuReading,
    UtilisationSample,
    UtilisationSampler,
    find_reader,
    parse_utilisation_csv,
)

WAIT_S = 10.0  # upper bound on any wait for the sampler thread; it normally takes milliseconds

# A stand-in for nvidia-smi: answers the utilisation query with two GPUs, the inventory query with two
# H200s, and counts its calls in a file so a test can make it fail after a number of readings.
FAKE_NVIDIA_SMI = """#!{python}
import os, sys
calls_file = os.environ.get("FAKE_SMI_CALLS")
calls = 0
if calls_file:
    calls = int(open(calls_file).read()) + 1 if os.path.exists(calls_file) else 1
    open(calls_file + ".tmp", "w").write(str(calls))
    os.replace(calls_file + ".tmp", calls_file)  # atomic: the test reads it while the sampler runs
fail_after = int(os.environ.get("FAKE_SMI_FAIL_AFTER", "0"))
if fail_after and calls > fail_after:
    sys.stderr.write("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver\\n")
    sys.exit(9)
if any(arg.startswith("--query-gpu=index,utilization.gpu") for arg in sys.argv[1:]):
    print("0, 87, 40321, 612.45")
    print("1, 3, 1024, [N/A]")
else:
    print("NVIDIA H200, 143771, 570.86.15")
    print("NVIDIA H200, 143771, 570.86.15")
"""


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Puts an executable fake nvidia-smi first on PATH; returns the file that counts its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI.format(python=sys.executable), encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]))
    calls = tmp_path / "smi_calls"
    monkeypatch.setenv("FAKE_SMI_CALLS", str(calls))
    return calls


@pytest.fixture
def no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH without nvidia-smi and a pynvml that cannot be imported: a host with no GPU."""
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError


def smi_calls(calls_file: Path) -> int:
    return int(calls_file.read_text()) if calls_file.exists() else 0


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the sampler thread did not get there in time"
        time.sleep(0.01)


def test_utilisation_csv_rows_become_readings_with_unreported_power_as_none() -> None:
    text = "0, 87, 40321, 612.45\n1, 3, 1024, [N/A]\n\n2, [N/A], 0, 50\n"
    assert parse_utilisation_csv(text) == [GpuReading(0, 87.0, 40321.0, 612.45), GpuReading(1, 3.0, 1024.0, None)]


def test_utilisation_csv_with_the_wrong_field_count_is_an_error_echoing_the_line() -> None:
    with pytest.raises(ValueError, match="Received: 'NVIDIA H200, 143771'"):
        parse_utilisation_csv("NVIDIA H200, 143771\n")


def test_sampler_reads_the_fake_nvidia_smi_every_interval_until_stopped(fake_nvidia_smi: Path) -> None:
    started = time.perf_counter()
    sampler = UtilisationSampler(started=started, interval_s=0.02)
    assert sampler.start() is True
    wait_for(lambda: len(sampler.samples) >= 6)
    samples = sampler.stop()
    calls_at_stop = smi_calls(fake_nvidia_smi)
    assert len(samples) == 2 * calls_at_stop  # two GPUs per reading, every reading kept
    assert samples[0] == UtilisationSample(samples[0].t, 0, 87.0, 40321.0, 612.45)
    assert samples[1] == UtilisationSample(samples[1].t, 1, 3.0, 1024.0, None)
    times = [sample.t for sample in samples[::2]]
    assert times == sorted(times) and times[0] >= 0
    time.sleep(0.1)
    assert smi_calls(fake_nvidia_smi) == calls_at_stop  # stopped means no more readings


def test_a_failing_nvidia_smi_stops_sampling_with_one_warning_and_keeps_earlier_samples(
    fake_nvidia_smi: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_SMI_FAIL_AFTER", "2")
    sampler = UtilisationSampler(started=time.perf_counter(), interval_s=0.01)
    assert sampler.start() is True
    wait_for(lambda: smi_calls(fake_nvidia_smi) >= 3)
    samples = sampler.stop()
    assert len(samples) == 4  # two readings of two GPUs before the failure
    warnings = [line for line in capsys.readouterr().err.splitlines() if "utilisation" in line]
    assert len(warnings) == 1
    assert "stopped after 4 samples" in warnings[0] and "nvidia-smi exited 9" in warnings[0]


def test_no_gpu_means_no_thread_and_no_samples(no_gpu: None) -> None:
    threads_before = threading.active_count()
    sampler = UtilisationSampler(started=time.perf_counter(), interval_s=0.01)
    assert sampler.start() is False
    assert threading.active_count() == threads_before
    assert sampler.stop() == []


class FakeNvml:
    """The few pynvml functions the NVML reader calls, for two GPUs, one without a power sensor."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        self.shut_down = False

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return type("Rates", (), {"gpu": 50 + handle})()

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return type("Memory", (), {"used": 2048 * 1024 * 1024, "total": 16384 * 1024 * 1024})()

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if handle == 1:
            raise self.NVMLError("Not Supported")
        return 250_500  # milliwatts


def test_without_nvidia_smi_the_sampler_reads_nvml_and_shuts_it_down(no_gpu: None) -> None:
    nvml = FakeNvml()
    sampler = UtilisationSampler(
        started=time.perf_counter(), interval_s=0.01, reader_factory=lambda: find_reader(nvml_loader=lambda: nvml)
    )
    assert sampler.start() is True
    wait_for(lambda: len(sampler.samples) >= 2)
    samples = sampler.stop()
    assert samples[:2] == [
        UtilisationSample(samples[0].t, 0, 50.0, 2048.0, 250.5),
        UtilisationSample(samples[1].t, 1, 51.0, 2048.0, None),
    ]
    assert nvml.shut_down is True


def _waiting_suite(until: Callable[[], bool]) -> Suite:
    def run(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
        wait_for(until)

    return Suite(name="wait", description="waits for a condition", params=(), run=run)


def _run_cli(tmp_path: Path, suite: Suite) -> dict[str, Any]:
    suite_path = tmp_path / "suite.json"
    suite_path.write_text(json.dumps({"schema_version": 1, "suite": suite.name, "run_id": "r-util"}))
    out = tmp_path / "results.json"
    assert cli.main(["--suite", str(suite_path), "--out", str(out)], suites={suite.name: suite}) == 0
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


def test_every_suite_run_writes_gpu_samples_into_the_document(
    fake_nvidia_smi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schema_validator: Any
) -> None:
    monkeypatch.setattr(utilisation, "SAMPLE_INTERVAL_S", 0.05)
    document = _run_cli(tmp_path, _waiting_suite(lambda: smi_calls(fake_nvidia_smi) >= 3))
    assert list(schema_validator.iter_errors(document)) == []
    rows = document["utilisation"]
    assert len(rows) >= 6 and len(rows) % 2 == 0  # at least three readings of two GPUs
    assert rows[0] == {"t": rows[0]["t"], "gpu": 0, "util_pct": 87.0, "mem_used_mib": 40321.0, "power_w": 612.45}
    assert rows[1]["power_w"] is None
    assert 0 <= rows[0]["t"] <= rows[-1]["t"] <= document["timings"]["total_s"]
    assert document["host"]["accelerator"] == "nvidia"
    assert [gpu["name"] for gpu in document["host"]["gpus"]] == ["NVIDIA H200", "NVIDIA H200"]


def test_a_run_without_a_gpu_records_no_samples_and_says_so_in_host(
    no_gpu: None, tmp_path: Path, schema_validator: Any
) -> None:
    document = _run_cli(tmp_path, _waiting_suite(lambda: True))
    assert list(schema_validator.iter_errors(document)) == []
    assert document["utilisation"] == []
    assert document["host"]["gpus"] == []
    assert document["host"]["accelerator"] == "none"
