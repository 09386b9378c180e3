"""Training time per span of steps with warm-up excluded (stdlib only); the statistics are in ``timing.spread``.

A span is what one call of the training function ran: one step, or a chunk of ``steps_per_execution`` steps
run back to back without Python between them (the lean timed path; see ``timing.throughput``). Durations are
end-to-end between consecutive span ends within an epoch; the first span of an epoch is timed from its begin,
so time spent between epochs (validation, evaluation, iterator start) never counts. Per-step times of a chunk
are its time over its steps: percentiles come from chunk times, not from a host sync after every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainStep:
    """One training step as the timer saw it."""

    epoch: int  # 0-based, in the order epochs began
    images: int  # images in this span's batches (the last batch of an epoch may be short)
    seconds: float
    steps: int = 1  # steps in this span: 1, or the steps of one chunk (steps_per_execution)


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

    def batch_end(self, images: int, steps: int = 1) -> None:
        """Closes the current span.

        Args:
            images: How many images the span's batches held.
            steps: How many steps the span ran (a chunk of ``steps_per_execution``; 1 without).

        Raises:
            RuntimeError: When no batch began in this epoch.
        """
        now = self._clock()
        started = self._last_end if self._last_end is not None else self._epoch_first_begin
        if started is None:
            raise RuntimeError("StepTimer.batch_end called before any batch_begin in this epoch")
        self.steps.append(TrainStep(max(self._epoch, 0), images, now - started, steps))
        self._last_end = now


@dataclass(frozen=True)
class ThroughputSummary:
    """Training throughput over the steps after warm-up."""

    images_per_sec: float
    timed_steps: int
    timed_images: int
    timed_seconds: float
    # Per-step time of each timed span whose batches were all full size: the span's time over its steps.
    full_batch_step_ms: tuple[float, ...]
    warmup_steps: int = 0  # the steps actually left out: ``warmup_steps`` rounded up to whole spans
    full_batch_steps: int = 0  # the steps of the spans behind ``full_batch_step_ms``


def summarize_steps(steps: Sequence[TrainStep], warmup_steps: int, batch_size: int) -> ThroughputSummary | None:
    """Drops the spans holding the first ``warmup_steps`` steps (tracing, compilation) and summarises the rest.

    A span that holds any of the first ``warmup_steps`` steps is dropped whole, so with chunks the warm-up is
    rounded up to whole chunks (``ThroughputSummary.warmup_steps`` says how many steps that left out).

    Args:
        steps: Every span in the order it ran, across all epochs.
        warmup_steps: How many leading steps to exclude.
        batch_size: The full batch size; shorter batches count for images/sec but not for step times.

    Returns:
        The summary, or None when no span (or no time) is left after warm-up.
    """
    dropped = 0
    start = 0
    while start < len(steps) and dropped < warmup_steps:
        dropped += steps[start].steps
        start += 1
    timed = steps[start:]
    seconds = sum(step.seconds for step in timed)
    if not timed or seconds <= 0:
        return None
    images = sum(step.images for step in timed)
    return ThroughputSummary(
        images_per_sec=images / seconds,
        timed_steps=sum(step.steps for step in timed),
        timed_images=images,
        timed_seconds=seconds,
        full_batch_step_ms=tuple(
            step.seconds * 1000.0 / step.steps for step in timed if step.images == batch_size * step.steps
        ),
        warmup_steps=dropped,
        full_batch_steps=sum(step.steps for step in timed if step.images == batch_size * step.steps),
    )
