"""Timed training and inference repeats, and the sample rows they become; shared by the throughput suites.

One training measurement is one ``model.fit`` of ``repeats`` epochs of ``warmup_steps + steps`` steps each. The
first ``warmup_steps`` steps of every epoch are excluded (tracing and compilation in the first, iterator
start-up in the others), the remaining ``steps`` are timed by ``StepTimer``. images_per_sec is the median of the
per-repeat figures; step times pool the timed steps of all repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_bench.inference import InferenceTiming
from keras_bench.recorder import RunRecorder
from keras_bench.results import MetadataValue
from keras_bench.stop import StopRequest
from keras_bench.timing import StepTimer, ThroughputSummary, mean, percentile, stdev, summarize_steps


@dataclass(frozen=True)
class TrainingTiming:
    """The timed part of each repeat."""

    repeats: tuple[ThroughputSummary, ...]

    @property
    def median_images_per_sec(self) -> float:
        """Images/sec of the median repeat."""
        return float(np.median([r.images_per_sec for r in self.repeats]))

    @property
    def step_ms(self) -> tuple[float, ...]:
        """Every timed full-batch step time, in ms, over all repeats."""
        return tuple(ms for r in self.repeats for ms in r.full_batch_step_ms)


def summarize_repeats(timer: StepTimer, warmup_steps: int, batch_size: int) -> TrainingTiming:
    """Splits the timer's steps by epoch (one epoch per repeat) and drops each epoch's warm-up steps.

    Args:
        timer: Filled by a ``StepTimerCallback`` during fit.
        warmup_steps: Leading steps of every epoch to exclude.
        batch_size: Full batch size.

    Returns:
        One summary per epoch that has timed steps left.
    """
    epochs = sorted({step.epoch for step in timer.steps})
    summaries = []
    for epoch in epochs:
        summary = summarize_steps([s for s in timer.steps if s.epoch == epoch], warmup_steps, batch_size)
        if summary is not None:
            summaries.append(summary)
    return TrainingTiming(tuple(summaries))


def time_training(
    model: Any,
    x: Any,
    y: Any,
    *,
    batch_size: int,
    warmup_steps: int,
    steps: int,
    repeats: int,
    stop: StopRequest,
) -> TrainingTiming:
    """Trains a compiled model for ``repeats`` epochs of ``warmup_steps + steps`` steps and times the steps.

    Args:
        model: A compiled Keras model.
        x: Arrays holding at least ``batch_size * (warmup_steps + steps)`` examples, or a repeating, batched
            ``tf.data.Dataset`` of (images, labels) (then ``y`` is None).
        y: Labels for array ``x``; None for a dataset.
        batch_size: Images per step.
        warmup_steps: Untimed steps at the start of every repeat.
        steps: Timed steps per repeat.
        repeats: Epochs.
        stop: Checked at every batch end.

    Returns:
        The timed steps per repeat.
    """
    from keras_bench.keras_callbacks import StepTimerCallback, StopCheckCallback

    steps_per_epoch = warmup_steps + steps
    timer = StepTimer()
    arrays = y is not None
    model.fit(
        x,
        y,
        batch_size=batch_size if arrays else None,
        epochs=repeats,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,
        verbose=0,
        callbacks=[StepTimerCallback(timer, batch_size * steps_per_epoch, batch_size), StopCheckCallback(stop)],
    )
    return summarize_repeats(timer, warmup_steps, batch_size)


def _add_step_times(
    recorder: RunRecorder, benchmark: str, step_ms: Sequence[float], metadata: dict[str, MetadataValue]
) -> None:
    if not step_ms:
        return
    step_metadata = {**metadata, "timed_steps": len(step_ms)}
    recorder.add(benchmark, "step_time_ms_mean", mean(step_ms), "ms", step_metadata)
    recorder.add(benchmark, "step_time_ms_p50", percentile(step_ms, 50), "ms", step_metadata)
    recorder.add(benchmark, "step_time_ms_p90", percentile(step_ms, 90), "ms", step_metadata)
    if len(step_ms) >= 2:
        recorder.add(benchmark, "step_time_ms_stdev", stdev(step_ms), "ms", step_metadata)


def record_training(recorder: RunRecorder, timing: TrainingTiming, metadata: dict[str, MetadataValue]) -> float | None:
    """Writes ``train_throughput`` rows: images_per_sec (median repeat) and step_time_ms_mean/p50/p90/stdev.

    With ``metadata["gpus"]`` of 1 or more it also writes ``train_throughput_per_gpu/images_per_sec``, the
    median divided by the GPUs the step ran on; on a machine without GPU that row is left out.

    Args:
        recorder: Receives the rows.
        timing: From ``time_training``.
        metadata: The recipe; ``repeats_timed`` is added.

    Returns:
        The median images/sec, or None when no repeat had a timed step.
    """
    if not timing.repeats:
        return None
    rows = {**metadata, "repeats_timed": len(timing.repeats)}
    value = timing.median_images_per_sec
    recorder.add("train_throughput", "images_per_sec", value, "images/s", rows)
    _add_per_gpu(recorder, "train_throughput_per_gpu", value, rows)
    _add_step_times(recorder, "train_throughput", timing.step_ms, metadata)
    return value


def record_inference(
    recorder: RunRecorder, timing: InferenceTiming, metadata: dict[str, MetadataValue]
) -> float | None:
    """Writes ``inference_throughput`` rows: images_per_sec (median pass) and per-batch step times.

    Args:
        recorder: Receives the rows.
        timing: From ``inference.time_batched_passes``.
        metadata: The recipe.

    Returns:
        The median images/sec, or None when there was no timed pass.
    """
    if not timing.passes:
        return None
    value = timing.median_images_per_sec
    recorder.add("inference_throughput", "images_per_sec", value, "images/s", metadata)
    _add_per_gpu(recorder, "inference_throughput_per_gpu", value, metadata)
    _add_step_times(recorder, "inference_throughput", timing.full_batch_ms, metadata)
    return value


def _add_per_gpu(recorder: RunRecorder, benchmark: str, value: float, metadata: dict[str, MetadataValue]) -> None:
    gpus = metadata.get("gpus")
    if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 1:
        recorder.add(benchmark, "images_per_sec", value / gpus, "images/s", metadata)
