"""GPU utilisation, memory and power sampled in a background thread while a suite runs.

One reading per GPU per interval (a second by default) from ``nvidia-smi``, or from NVML through ``pynvml``
when nvidia-smi is not on PATH. No GPU means no thread and no samples. The sampler never fails the run: the
first error is reported in one warning line and sampling stops, keeping the samples taken so far.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from keras_bench.hostinfo import MIB, import_pynvml
from keras_bench.progress import say, warn

NVIDIA_SMI_UTILISATION_QUERY = [
    "--query-gpu=index,utilization.gpu,memory.used,power.draw",
    "--format=csv,noheader,nounits",
]
SAMPLE_INTERVAL_S = 1.0
READ_TIMEOUT_S = 10.0  # one nvidia-smi call; a hung driver must not hang the payload
STOP_JOIN_MARGIN_S = 2.0


@dataclass(frozen=True)
class UtilisationSample:
    """One GPU at one moment, as the results document's ``utilisation`` list carries it."""

    t: float  # seconds since the payload started
    gpu: int  # device index
    util_pct: float
    mem_used_mib: float
    power_w: float | None  # None where the GPU does not report power draw


@dataclass(frozen=True)
class GpuReading:
    """One GPU's figures from one query, before they are stamped with a time."""

    gpu: int
    util_pct: float
    mem_used_mib: float
    power_w: float | None


class GpuReader(Protocol):
    """Reads every GPU's current figures; raises on failure."""

    def read(self) -> list[GpuReading]: ...

    def close(self) -> None: ...


def _number_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # nvidia-smi writes "[N/A]" or "[Not Supported]" for fields a GPU does not report


def parse_utilisation_csv(text: str) -> list[GpuReading]:
    """Parses ``nvidia-smi --query-gpu=index,utilization.gpu,memory.used,power.draw`` CSV (noheader, nounits).

    Args:
        text: Its stdout, one GPU per line, e.g. ``"0, 87, 40321, 612.45"``.

    Returns:
        One reading per line whose index, utilisation and memory are numbers; a power of ``[N/A]`` becomes None.

    Raises:
        ValueError: For a line without four fields, echoing the line.
    """
    readings = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [part.strip() for part in line.split(",")]
        if len(fields) != 4:
            raise ValueError(f"expected 4 comma-separated fields from nvidia-smi. Received: {line!r}")
        index, util, memory, power = fields
        util_pct, mem_used = _number_or_none(util), _number_or_none(memory)
        if not index.isdigit() or util_pct is None or mem_used is None:
            continue  # a GPU that cannot report utilisation (e.g. under MIG) has nothing to record
        if not 0 <= util_pct <= 100 or mem_used < 0:
            continue  # out of range: not a reading the results schema (or a person) could trust
        power_w = _number_or_none(power)
        if power_w is not None and power_w < 0:
            power_w = None
        readings.append(GpuReading(int(index), util_pct, mem_used, power_w))
    return readings


class NvidiaSmiReader:
    """Runs nvidia-smi once per reading."""

    def __init__(
        self,
        executable: str,
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    ) -> None:
        """Creates the reader.

        Args:
            executable: The nvidia-smi path.
            run: Runs a command; tests pass a fake.
        """
        self.executable = executable
        self._run = run

    def read(self) -> list[GpuReading]:
        """Queries every GPU once.

        Raises:
            RuntimeError: When nvidia-smi exits non-zero, with its stderr.
            subprocess.TimeoutExpired: When it does not answer within ``READ_TIMEOUT_S``.
        """
        completed = self._run(
            [self.executable, *NVIDIA_SMI_UTILISATION_QUERY],
            capture_output=True,
            text=True,
            timeout=READ_TIMEOUT_S,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"nvidia-smi exited {completed.returncode}: {completed.stderr.strip()[:200]}")
        return parse_utilisation_csv(completed.stdout)

    def close(self) -> None:
        """Nothing to release: every reading is its own process."""


class NvmlReader:
    """Reads through NVML, initialised once for the sampler's lifetime."""

    def __init__(self, nvml: Any) -> None:
        """Initialises NVML.

        Args:
            nvml: The ``pynvml`` module, or a stand-in with the same functions.

        Raises:
            Exception: Whatever ``nvmlInit`` raises when there is no driver or device.
        """
        self._nvml = nvml
        nvml.nvmlInit()

    def read(self) -> list[GpuReading]:
        """Reads every GPU once; power draw comes from NVML in milliwatts."""
        nvml = self._nvml
        readings = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            try:
                power_w: float | None = float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
            except Exception:
                power_w = None  # NVMLError_NotSupported on GPUs without a power sensor
            readings.append(
                GpuReading(
                    index,
                    float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                    float(nvml.nvmlDeviceGetMemoryInfo(handle).used) / MIB,
                    power_w,
                )
            )
        return readings

    def close(self) -> None:
        """Shuts NVML down."""
        self._nvml.nvmlShutdown()


def find_reader(
    which: Callable[[str], str | None] = shutil.which,
    nvml_loader: Callable[[], Any] = import_pynvml,
) -> GpuReader | None:
    """Picks nvidia-smi when it is on PATH, else NVML when pynvml loads and initialises, else nothing.

    Args:
        which: Finds an executable on PATH; tests pass a fake.
        nvml_loader: Returns the pynvml module or None; tests pass a fake.

    Returns:
        A reader, or None when this host has no GPU to sample.
    """
    executable = which("nvidia-smi")
    if executable is not None:
        return NvidiaSmiReader(executable)
    nvml = nvml_loader()
    if nvml is None:
        return None
    try:
        return NvmlReader(nvml)
    except Exception:
        return None  # NVML present but no driver or device: a host without a GPU


class UtilisationSampler:
    """Samples GPU utilisation in a daemon thread between ``start()`` and ``stop()``."""

    def __init__(
        self,
        started: float,
        interval_s: float | None = None,
        reader_factory: Callable[[], GpuReader | None] = find_reader,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Creates a sampler that has not started.

        Args:
            started: The payload's start on ``clock``; every sample's ``t`` counts from it.
            interval_s: Seconds between readings; None reads ``SAMPLE_INTERVAL_S`` (a second) when called.
            reader_factory: Returns the GPU reader, or None when there is no GPU.
            clock: Monotonic seconds.
        """
        self._started = started
        self._interval_s = SAMPLE_INTERVAL_S if interval_s is None else interval_s
        self._reader_factory = reader_factory
        self._clock = clock
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._samples: list[UtilisationSample] = []
        self._thread: threading.Thread | None = None
        self._reader: GpuReader | None = None

    @property
    def samples(self) -> list[UtilisationSample]:
        """A copy of the samples taken so far."""
        with self._lock:
            return list(self._samples)

    def start(self) -> bool:
        """Starts sampling, unless there is no GPU.

        Returns:
            True when a sampling thread started; False when there is no GPU (or finding one failed).
        """
        try:
            self._reader = self._reader_factory()
        except Exception as exc:
            warn(f"GPU utilisation sampling is off: looking for a GPU failed: {exc}")
            return False
        if self._reader is None:
            say("no GPU found: no utilisation samples")
            return False
        self._thread = threading.Thread(target=self._loop, name="keras_bench-utilisation", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout_s: float = READ_TIMEOUT_S + STOP_JOIN_MARGIN_S) -> list[UtilisationSample]:
        """Stops the thread, waiting at most ``timeout_s`` for a reading in progress.

        Args:
            timeout_s: Longest wait for the thread to end; a daemon thread left behind never blocks exit.

        Returns:
            Every sample taken.
        """
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                warn(f"GPU utilisation sampler did not stop within {timeout_s:.0f}s; keeping its samples so far")
        return self.samples

    def _loop(self) -> None:
        reader = self._reader
        assert reader is not None
        try:
            while not self._halt.is_set():
                readings = reader.read()
                now = max(0.0, self._clock() - self._started)
                with self._lock:
                    self._samples.extend(
                        UtilisationSample(round(now, 3), r.gpu, r.util_pct, r.mem_used_mib, r.power_w) for r in readings
                    )
                self._halt.wait(self._interval_s)
        except Exception as exc:
            warn(f"GPU utilisation sampling stopped after {len(self.samples)} samples: {exc}")
        finally:
            try:
                reader.close()
            except Exception as exc:
                warn(f"GPU utilisation reader did not close cleanly: {exc}")
