"""The machine and software a run happened on. Never imports Keras or a backend itself.

GPUs come from ``nvidia-smi`` when it is on PATH, else from NVML through ``pynvml`` when that is importable;
neither means no GPU, which is recorded (``gpus: []``, ``accelerator: "none"``), not an error.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from keras_bench.progress import warn

NVIDIA_SMI_QUERY = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"]
NVIDIA_SMI_TIMEOUT_S = 15.0
MIB = 1024 * 1024
ACCELERATOR_NVIDIA = "nvidia"
ACCELERATOR_NONE = "none"

# Distribution names that may provide each backend's module (tensorflow-cpu installs the `tensorflow` module).
_BACKEND_DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly"),
    "jax": ("jax",),
    "torch": ("torch",),
    "numpy": ("numpy",),
}


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as nvidia-smi reports it."""

    name: str
    memory_mib: float | None
    driver: str | None


@dataclass(frozen=True)
class HostInfo:
    """The machine the payload ran on."""

    hostname: str
    cpu: str  # CPU model name
    cpu_count: int | None  # logical CPUs
    gpus: list[GpuInfo] = field(default_factory=list)  # empty when there is no NVIDIA GPU
    cpu_cores: int | None = None  # physical cores; None where /proc/cpuinfo does not tell
    # "nvidia" when any GPU was found, else "none": derived from gpus, so a document never contradicts itself.
    accelerator: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "accelerator", ACCELERATOR_NVIDIA if self.gpus else ACCELERATOR_NONE)


@dataclass(frozen=True)
class SoftwareInfo:
    """Versions of what ran the payload; None where a package is absent or unused."""

    python: str
    keras: str | None
    backend: str | None
    backend_version: str | None
    cuda: str | None  # CUDA version the backend was built with; None on CPU-only builds
    numpy: str | None
    cudnn: str | None = None  # cuDNN version the backend was built with; None on CPU-only builds


def read_cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Returns the CPU model name from ``/proc/cpuinfo``, else ``platform.processor()``, else "unknown".

    Args:
        cpuinfo: Where to read it; tests pass a file of their own.
    """
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass  # not Linux: platform.processor() below is the portable answer
    return platform.processor() or platform.machine() or "unknown"


def read_cpu_cores(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """Counts physical CPU cores: distinct (physical id, core id) pairs in ``/proc/cpuinfo``.

    Args:
        cpuinfo: Where to read it; tests pass a file of their own.

    Returns:
        The count, or None when the file is unreadable or lists no core ids (some VMs, non-Linux).
    """
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    cores: set[tuple[str, str]] = set()
    physical_id = "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            physical_id = "0"
        elif key == "physical id":
            physical_id = value.strip()
        elif key == "core id":
            cores.add((physical_id, value.strip()))
    return len(cores) or None


def _optional_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # nvidia-smi writes "[N/A]" for fields a GPU does not report


def parse_nvidia_smi_csv(text: str) -> list[GpuInfo]:
    """Parses ``nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits``.

    Args:
        text: Its stdout, one GPU per line, e.g. ``"NVIDIA H200, 143771, 570.86.15"``.

    Returns:
        One GpuInfo per non-empty line.
    """
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        # Split from the right: a GPU name could contain a comma, the two numeric fields cannot.
        name, memory, driver = (part.strip() for part in (line.rsplit(",", 2) + ["", ""])[:3])
        gpus.append(GpuInfo(name=name, memory_mib=_optional_number(memory), driver=driver or None))
    return gpus


def query_gpus(
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> list[GpuInfo]:
    """Lists NVIDIA GPUs with nvidia-smi; no nvidia-smi on PATH means no GPU, which is not an error.

    Args:
        which: Finds an executable on PATH; tests pass a fake.
        run: Runs a command; tests pass a fake.

    Returns:
        The GPUs, or an empty list (with a warning line when nvidia-smi exists but fails).
    """
    executable = which("nvidia-smi")
    if executable is None:
        return []
    try:
        completed = run(
            [executable, *NVIDIA_SMI_QUERY],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        warn(f"nvidia-smi failed, reporting no GPUs: {exc}")
        return []
    if completed.returncode != 0:
        warn(f"nvidia-smi exited {completed.returncode}, reporting no GPUs: {completed.stderr.strip()[:200]}")
        return []
    return parse_nvidia_smi_csv(completed.stdout)


def _text(value: object) -> str:
    # pynvml returns bytes from older releases and str from newer ones.
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def import_pynvml() -> ModuleType | None:
    """Returns the ``pynvml`` module, or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    module: ModuleType = pynvml
    return module


def query_gpus_nvml(nvml: Any) -> list[GpuInfo]:
    """Lists NVIDIA GPUs through NVML; a failing NVML (no driver, no device) means no GPU.

    Args:
        nvml: The ``pynvml`` module, or a stand-in with the same functions.

    Returns:
        The GPUs, or an empty list (with a warning line when NVML loads but fails).
    """
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded...: this host has no usable GPU
        warn(f"NVML did not initialise, reporting no GPUs: {exc}")
        return []
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GpuInfo(_text(nvml.nvmlDeviceGetName(handle)), float(memory.total) / MIB, driver))
        return gpus
    except Exception as exc:
        warn(f"NVML failed, reporting no GPUs: {exc}")
        return []
    finally:
        # A shutdown that fails loses nothing: the GPUs have been read (or reading them already failed).
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def discover_gpus(
    which: Callable[[str], str | None] = shutil.which,
    nvml_loader: Callable[[], Any] = import_pynvml,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> list[GpuInfo]:
    """Lists GPUs with nvidia-smi when it is on PATH, else with NVML when pynvml is importable.

    Args:
        which: Finds an executable on PATH; tests pass a fake.
        nvml_loader: Returns the pynvml module or None; tests pass a fake.
        run: Runs nvidia-smi; tests pass a fake.

    Returns:
        The GPUs; empty when neither source is available or both report none.
    """
    if which("nvidia-smi") is not None:
        return query_gpus(which=which, run=run)
    nvml = nvml_loader()
    return query_gpus_nvml(nvml) if nvml is not None else []


def host_info() -> HostInfo:
    """Describes this machine: hostname, CPU model, logical CPUs and physical cores, NVIDIA GPUs."""
    return HostInfo(
        hostname=socket.gethostname(),
        cpu=read_cpu_model(),
        cpu_count=os.cpu_count(),
        gpus=discover_gpus(),
        cpu_cores=read_cpu_cores(),
    )


def _distribution_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _module_version(module_name: str, distributions: tuple[str, ...]) -> str | None:
    module = sys.modules.get(module_name)
    version = getattr(module, "__version__", None) if module is not None else None
    return str(version) if version is not None else _distribution_version(distributions)


def _cuda_versions(backend: str | None) -> tuple[str | None, str | None]:
    """Returns (CUDA, cuDNN) versions the backend was built with; (None, None) on CPU-only builds."""
    # Only asks a backend that is already imported: describing the run must not import TensorFlow.
    if backend == "tensorflow" and "tensorflow" in sys.modules:
        build = sys.modules["tensorflow"].sysconfig.get_build_info()
        cuda, cudnn = build.get("cuda_version"), build.get("cudnn_version")
        return (str(cuda) if cuda else None, str(cudnn) if cudnn else None)
    if backend == "torch" and "torch" in sys.modules:
        torch = sys.modules["torch"]
        cuda = torch.version.cuda
        cudnn = torch.backends.cudnn.version() if cuda else None
        return (str(cuda) if cuda else None, str(cudnn) if cudnn else None)
    return (None, None)


def software_info() -> SoftwareInfo:
    """Describes Python, Keras, the backend (with its CUDA and cuDNN build versions) and numpy.

    The backend is what Keras reports when it has been imported, else ``KERAS_BACKEND``, else None.
    """
    keras = sys.modules.get("keras")
    backend = str(keras.backend.backend()) if keras is not None else os.environ.get("KERAS_BACKEND") or None
    backend_version = None
    if backend is not None:
        backend_version = _module_version(backend, _BACKEND_DISTRIBUTIONS.get(backend, (backend,)))
    cuda, cudnn = _cuda_versions(backend)
    return SoftwareInfo(
        python=platform.python_version(),
        keras=_module_version("keras", ("keras",)),
        backend=backend,
        backend_version=backend_version,
        cuda=cuda,
        numpy=_module_version("numpy", ("numpy",)),
        cudnn=cudnn,
    )
