"""The machine and software a run happened on. Never imports Keras or a backend itself."""

from __future__ import annotations

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

from keras_bench.progress import warn

NVIDIA_SMI_QUERY = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"]
NVIDIA_SMI_TIMEOUT_S = 15.0

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


@dataclass(frozen=True)
class SoftwareInfo:
    """Versions of what ran the payload; None where a package is absent or unused."""

    python: str
    keras: str | None
    backend: str | None
    backend_version: str | None
    cuda: str | None  # CUDA version the backend was built with; None on CPU-only builds
    numpy: str | None


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


def host_info() -> HostInfo:
    """Describes this machine: hostname, CPU model and count, NVIDIA GPUs."""
    return HostInfo(hostname=socket.gethostname(), cpu=read_cpu_model(), cpu_count=os.cpu_count(), gpus=query_gpus())


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


def _cuda_version(backend: str | None) -> str | None:
    # Only asks a backend that is already imported: describing the run must not import TensorFlow.
    if backend == "tensorflow" and "tensorflow" in sys.modules:
        build = sys.modules["tensorflow"].sysconfig.get_build_info()
        cuda = build.get("cuda_version")
        return str(cuda) if cuda else None
    if backend == "torch" and "torch" in sys.modules:
        cuda = sys.modules["torch"].version.cuda
        return str(cuda) if cuda else None
    return None


def software_info() -> SoftwareInfo:
    """Describes Python, Keras, the backend and numpy.

    The backend is what Keras reports when it has been imported, else ``KERAS_BACKEND``, else None.
    """
    keras = sys.modules.get("keras")
    backend = str(keras.backend.backend()) if keras is not None else os.environ.get("KERAS_BACKEND") or None
    backend_version = None
    if backend is not None:
        backend_version = _module_version(backend, _BACKEND_DISTRIBUTIONS.get(backend, (backend,)))
    return SoftwareInfo(
        python=platform.python_version(),
        keras=_module_version("keras", ("keras",)),
        backend=backend,
        backend_version=backend_version,
        cuda=_cuda_version(backend),
        numpy=_module_version("numpy", ("numpy",)),
    )
