"""Device facts: physical cores, the accelerator fact, GPUs from NVML when nvidia-smi is absent, cuDNN."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from keras_bench.hostinfo import GpuInfo, HostInfo, discover_gpus, query_gpus_nvml, read_cpu_cores, software_info

TWO_SOCKETS_HYPERTHREADED = "".join(
    f"processor\t: {cpu}\nphysical id\t: {cpu // 4}\ncore id\t\t: {(cpu % 4) // 2}\ncpu cores\t: 2\n\n"
    for cpu in range(8)
)


class FakeNvml:
    """The pynvml functions the GPU inventory calls; ``fail_init`` plays a host with NVML but no driver."""

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init = fail_init
        self.shut_down = False

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"570.86.15"  # older pynvml releases return bytes

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(total=143771 * 1024 * 1024, used=0)


def test_physical_cores_count_distinct_core_ids_per_socket(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(TWO_SOCKETS_HYPERTHREADED, encoding="utf-8")
    assert read_cpu_cores(cpuinfo) == 4  # 8 logical CPUs: 2 sockets x 2 cores x 2 threads


def test_physical_cores_are_unknown_when_cpuinfo_has_no_core_ids(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Neoverse-V2\n", encoding="utf-8")
    assert read_cpu_cores(cpuinfo) is None
    assert read_cpu_cores(tmp_path / "absent") is None


def test_accelerator_is_none_without_gpus_and_nvidia_with_them() -> None:
    assert asdict(HostInfo("box", "AMD EPYC", 2))["accelerator"] == "none"
    with_gpu = HostInfo("box", "AMD EPYC", 2, [GpuInfo("NVIDIA H200", 143771.0, "570.86.15")], cpu_cores=2)
    assert asdict(with_gpu)["accelerator"] == "nvidia"


def test_without_nvidia_smi_gpus_come_from_nvml() -> None:
    nvml = FakeNvml()
    assert discover_gpus(which=lambda name: None, nvml_loader=lambda: nvml) == [
        GpuInfo("NVIDIA H200", 143771.0, "570.86.15")
    ]
    assert nvml.shut_down is True


def test_nvidia_smi_on_path_is_asked_before_nvml() -> None:
    def smi(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, "NVIDIA A10G, 23028, 535.104.05\n", "")

    def nvml_must_not_load() -> Any:
        raise AssertionError("NVML must not be asked when nvidia-smi is on PATH")

    gpus = discover_gpus(which=lambda name: "/usr/bin/nvidia-smi", nvml_loader=nvml_must_not_load, run=smi)
    assert gpus == [GpuInfo("NVIDIA A10G", 23028.0, "535.104.05")]


def test_nvml_without_a_driver_means_no_gpus_and_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    assert query_gpus_nvml(FakeNvml(fail_init=True)) == []
    assert "NVML Shared Library Not Found" in capsys.readouterr().err


def test_no_nvidia_smi_and_no_pynvml_means_no_gpus() -> None:
    assert discover_gpus(which=lambda name: None, nvml_loader=lambda: None) == []


def test_software_reports_cuda_and_cudnn_of_an_imported_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    build_info = {"cuda_version": "12.5.1", "cudnn_version": "9"}
    fake_tf = SimpleNamespace(__version__="2.21.0", sysconfig=SimpleNamespace(get_build_info=lambda: build_info))
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    software = software_info()
    assert (software.backend, software.backend_version, software.cuda, software.cudnn) == (
        "tensorflow",
        "2.21.0",
        "12.5.1",
        "9",
    )


def test_software_reports_no_cuda_for_a_cpu_only_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tf = SimpleNamespace(__version__="2.21.0", sysconfig=SimpleNamespace(get_build_info=lambda: {}))
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert (software_info().cuda, software_info().cudnn) == (None, None)
