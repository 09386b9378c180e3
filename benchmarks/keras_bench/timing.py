"""Per-step training time with warm-up excluded, and the statistics over it (stdlib + numpy only).

Durations are end-to-end between consecutive batch ends within an epoch; the first step of an epoch is timed
from its batch begin, so time spent between epochs (validation, evaluation, iterator start) never counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainStep:
    """One training step as the timer saw it."""

    epoch: int  # 0-based, in the order epochs began
    images: int  # images in this step's batch (the last batch of an epoch may be short)
    seconds: float


class StepTimer:
    """Records the duration of every training step from batch begin/end events.

    Framework-free: a Keras callback forwards its hooks here, and tests drive it with a fake clock.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        """Creates a timer with no steps.

        Args:
            clock: Monotonic seconds; tests pass a fake.
        """
        self._clock = clock
        self._epoch = -1
        self._epoch_first_begin: float | None = None
        self._last_end: float | None = None
        self.steps: list[TrainStep] = []

    def epoch_begin(self) -> None:
        """Starts a new epoch: its first step will be timed from its own batch begin."""
        self._epoch += 1
        self._epoch_first_begin = None
        self._last_end = None

    def batch_begin(self) -> None:
        """Marks a batch begin; only the first batch of an epoch uses it."""
        if self._last_end is None:
            self._epoch_first_begin = self._clock()

    def batch_end(self, images: int) -> None:
        """Closes the current step.

        Args:
            images: How many images the step's batch held.

        Raises:
            RuntimeError: When no batch began in this epoch.
        """
        now = self._clock()
        started = self._last_end if self._last_end is not None else self._epoch_first_begin
        if started is None:
            raise RuntimeError("StepTimer.batch_end called before any batch_begin in this epoch")
        self.steps.append(TrainStep(max(self._epoch, 0), images, now - started))
        self._last_end = now


@dataclass(frozen=True)
class ThroughputSummary:
    """Training throughput over the steps after warm-up."""

    images_per_sec: float
    timed_steps: int
    timed_images: int
    timed_seconds: float
    full_batch_step_ms: tuple[float, ...]  # durations of the timed steps whose batch was full size


def summarize_steps(steps: Sequence[TrainStep], warmup_steps: int, batch_size: int) -> ThroughputSummary | None:
    """Drops the first ``warmup_steps`` steps (tracing, compilation) and summarises the rest.

    Args:
        steps: Every step in the order it ran, across all epochs.
        warmup_steps: How many leading steps to exclude.
        batch_size: The full batch size; shorter batches count for images/sec but not for step times.

    Returns:
        The summary, or None when no step (or no time) is left after warm-up.
    """
    timed = steps[warmup_steps:]
    seconds = sum(step.seconds for step in timed)
    if not timed or seconds <= 0:
        return None
    images = sum(step.images for step in timed)
    return ThroughputSummary(
        images_per_sec=images / seconds,
        timed_steps=len(timed),
        timed_images=images,
        timed_seconds=seconds,
        full_batch_step_ms=tuple(step.seconds * 1000.0 for step in timed if step.images == batch_size),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Returns the q-th percentile (0-100) with linear interpolation, as numpy computes it."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def mean(values: Sequence[float]) -> float:
    """Returns the arithmetic mean."""
    if not values:
        raise ValueError("mean of an empty sequence")
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def stdev(values: Sequence[float]) -> float:
    """Returns the sample standard deviation (ddof=1); needs at least two values."""
    if len(values) < 2:
        raise ValueError(f"stdev needs at least two values. Received: {len(values)}")
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=1))
