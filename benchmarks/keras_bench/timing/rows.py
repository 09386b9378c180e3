"""The sample rows a timed throughput figure becomes: images/sec with its spread, per GPU, and step times.

images_per_sec is the median of the per-repeat figures, written with the repeats' min, max and coefficient of
variation and every repeat's own figure; per-step times are chunk times over K, pooled over all repeats.
"""

from __future__ import annotations

from collections.abc import Sequence

from keras_bench.recorder import RunRecorder
from keras_bench.results import MetadataValue
from keras_bench.timing.inference import InferenceTiming
from keras_bench.timing.spread import Spread, mean, percentile, stdev
from keras_bench.timing.throughput import TrainingTiming


def add_step_times(
    recorder: RunRecorder,
    benchmark: str,
    step_ms: Sequence[float],
    metadata: dict[str, MetadataValue],
    timed_steps: int | None = None,
) -> None:
    """Writes step_time_ms_mean/p50/p90 (and stdev from two values on) over per-step times.

    Args:
        recorder: Receives the rows.
        benchmark: E.g. ``train_throughput``.
        step_ms: One per-step time per timed span (a chunk's time over its steps, or one step's).
        metadata: The recipe; ``timed_steps`` (the steps the times cover) and ``timed_spans`` are added.
        timed_steps: The steps the spans hold; ``len(step_ms)`` when each span is one step.
    """
    if not step_ms:
        return
    step_metadata = {**metadata, "timed_steps": timed_steps or len(step_ms), "timed_spans": len(step_ms)}
    recorder.add(benchmark, "step_time_ms_mean", mean(step_ms), "ms", step_metadata)
    recorder.add(benchmark, "step_time_ms_p50", percentile(step_ms, 50), "ms", step_metadata)
    recorder.add(benchmark, "step_time_ms_p90", percentile(step_ms, 90), "ms", step_metadata)
    if len(step_ms) >= 2:
        recorder.add(benchmark, "step_time_ms_stdev", stdev(step_ms), "ms", step_metadata)


def record_training(recorder: RunRecorder, timing: TrainingTiming, metadata: dict[str, MetadataValue]) -> float | None:
    """Writes ``train_throughput`` rows: images_per_sec (median repeat) with its spread (see ``add_spread``) and
    step_time_ms_mean/p50/p90/stdev (chunk times over their steps, all repeats pooled).

    The rows' metadata gets ``steps`` (timed steps per repeat, after rounding to whole chunks),
    ``warmup_steps`` (the steps actually left out) and ``steps_per_execution``. With ``metadata["gpus"]`` of 1
    or more it also writes ``train_throughput_per_gpu/images_per_sec``, the median divided by the GPUs the step
    ran on; on a machine without GPU that row is left out.

    Args:
        recorder: Receives the rows.
        timing: From ``time_training``.
        metadata: The recipe.

    Returns:
        The median images/sec, or None when no repeat had a timed step.
    """
    return _record_chunked(recorder, "train_throughput", timing, metadata)


def record_chunked_inference(
    recorder: RunRecorder, timing: TrainingTiming, metadata: dict[str, MetadataValue]
) -> float | None:
    """Writes ``inference_throughput`` rows from ``time_inference``, with the same rows and metadata as
    ``record_training`` (``steps``, ``warmup_steps`` per pass, ``steps_per_execution``, ``repeats_timed``: the
    passes; step times are chunk times over their batches).

    Returns:
        The median pass's images/sec, or None when no pass had a timed batch.
    """
    return _record_chunked(recorder, "inference_throughput", timing, metadata)


def _record_chunked(
    recorder: RunRecorder, benchmark: str, timing: TrainingTiming, metadata: dict[str, MetadataValue]
) -> float | None:
    if not timing.repeats:
        return None
    timed_steps = max(r.timed_steps for r in timing.repeats)
    recipe = {**metadata, "steps": timed_steps, "warmup_steps": timing.warmup_steps,
              "steps_per_execution": timing.steps_per_execution}
    value = add_spread(recorder, benchmark, timing.spread, recipe)
    _add_per_gpu(recorder, f"{benchmark}_per_gpu", value, {**recipe, "repeats_timed": len(timing.repeats)})
    add_step_times(recorder, benchmark, timing.step_ms, recipe, timing.full_batch_steps)
    return value


def add_spread(recorder: RunRecorder, benchmark: str, spread: Spread, metadata: dict[str, MetadataValue]) -> float:
    """Writes one repeated throughput figure: images_per_sec (the median repeat), its min, max and coefficient of
    variation (two repeats or more), and each repeat's own figure (``images_per_sec_repeat``, ``repeat_index``).

    Args:
        recorder: Receives the rows.
        benchmark: E.g. ``train_throughput``.
        spread: The repeats' images/sec.
        metadata: The recipe; ``repeats_timed`` is added.

    Returns:
        The median.
    """
    rows = {**metadata, "repeats_timed": len(spread.values)}
    recorder.add(benchmark, "images_per_sec", spread.median, "images/s", rows)
    recorder.add(benchmark, "images_per_sec_min", spread.low, "images/s", rows)
    recorder.add(benchmark, "images_per_sec_max", spread.high, "images/s", rows)
    if spread.cv is not None:
        recorder.add(benchmark, "images_per_sec_cv", spread.cv, "fraction", rows)
    for index, value in enumerate(spread.values, start=1):
        recorder.add(benchmark, "images_per_sec_repeat", value, "images/s", {**rows, "repeat_index": index})
    return spread.median


def record_inference(
    recorder: RunRecorder, timing: InferenceTiming, metadata: dict[str, MetadataValue]
) -> float | None:
    """Writes ``inference_throughput`` rows: images_per_sec (median pass) and per-batch step times.

    Args:
        recorder: Receives the rows.
        timing: From ``timing.inference.time_batched_passes``.
        metadata: The recipe.

    Returns:
        The median images/sec, or None when there was no timed pass.
    """
    if not timing.passes:
        return None
    value = add_spread(recorder, "inference_throughput", timing.spread, metadata)
    _add_per_gpu(recorder, "inference_throughput_per_gpu", value, {**metadata, "repeats_timed": len(timing.passes)})
    add_step_times(recorder, "inference_throughput", timing.full_batch_ms, metadata)
    return value


def _add_per_gpu(recorder: RunRecorder, benchmark: str, value: float, metadata: dict[str, MetadataValue]) -> None:
    gpus = metadata.get("gpus")
    if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 1:
        recorder.add(benchmark, "images_per_sec", value / gpus, "images/s", metadata)
