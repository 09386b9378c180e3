"""Step timing on a fake clock: warm-up exclusion, time between epochs excluded, short batches, chunks of
steps_per_execution, the spread rows of a repeated figure; the yardstick's independence from the payload."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from keras_bench.recorder import RunRecorder
from keras_bench.timing.inference import time_batched_passes
from keras_bench.timing.rows import record_training
from keras_bench.timing.spread import Spread, percentile
from keras_bench.timing.steps import StepTimer, ThroughputSummary, TrainStep, summarize_steps
from keras_bench.timing.throughput import TrainingTiming, chunked_steps, summarize_repeats, without_first_short_span


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _drive(timer: StepTimer, clock: FakeClock, epochs: list[list[tuple[float, float, int]]]) -> None:
    """Feeds (begin time, end time, images) per batch, epoch by epoch."""
    for batches in epochs:
        timer.epoch_begin()
        for begin, end, images in batches:
            clock.now = begin
            timer.batch_begin()
            clock.now = end
            timer.batch_end(images)


def test_warmup_steps_are_excluded_and_time_between_epochs_is_not_counted() -> None:
    clock = FakeClock()
    timer = StepTimer(clock=clock)
    _drive(
        timer,
        clock,
        [
            # Epoch 0: a 5 s first step (tracing), then 1 s steps measured end to end.
            [(0.0, 5.0, 32), (5.2, 6.0, 32), (6.1, 7.0, 32)],
            # 100 s pass between epochs (evaluation); epoch 1's first step counts from its own batch begin.
            [(107.0, 108.0, 32), (108.3, 109.0, 32), (109.4, 110.0, 10)],
        ],
    )

    assert [step.seconds for step in timer.steps] == pytest.approx([5.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    summary = summarize_steps(timer.steps, warmup_steps=1, batch_size=32)

    assert summary is not None
    assert summary.timed_steps == 5
    assert summary.timed_images == 32 * 4 + 10
    assert summary.timed_seconds == pytest.approx(5.0)
    assert summary.images_per_sec == pytest.approx((32 * 4 + 10) / 5.0)
    assert summary.full_batch_step_ms == pytest.approx((1000.0, 1000.0, 1000.0, 1000.0))  # short batch left out


def test_without_warmup_exclusion_the_tracing_step_drags_throughput_down() -> None:
    steps = [TrainStep(0, 32, 5.0)] + [TrainStep(0, 32, 1.0)] * 4

    with_warmup = summarize_steps(steps, warmup_steps=1, batch_size=32)
    without = summarize_steps(steps, warmup_steps=0, batch_size=32)

    assert with_warmup is not None and without is not None
    assert with_warmup.images_per_sec == pytest.approx(32.0)
    assert without.images_per_sec == pytest.approx(32 * 5 / 9.0)


def test_no_summary_when_warmup_consumes_every_step() -> None:
    assert summarize_steps([TrainStep(0, 32, 1.0)] * 3, warmup_steps=3, batch_size=32) is None


def test_batch_end_without_a_batch_begin_is_refused() -> None:
    timer = StepTimer(clock=FakeClock())
    timer.epoch_begin()
    with pytest.raises(RuntimeError, match="before any batch_begin"):
        timer.batch_end(32)


def test_percentiles_interpolate_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == pytest.approx(25.0)
    assert percentile(values, 90) == pytest.approx(37.0)


def test_inference_excludes_the_warmup_pass_and_reports_the_median_pass() -> None:
    clock = FakeClock()
    pass_seconds = iter([99.0, 2.0, 1.0, 4.0])  # warm-up pass, then three timed passes
    calls: list[int] = []
    current = {"batch_seconds": 0.0}

    def predict(batch: np.ndarray) -> np.ndarray:
        if len(calls) % 3 == 0:  # first batch of a pass: this pass's duration, split over its 3 batches
            current["batch_seconds"] = next(pass_seconds) / 3
        calls.append(len(batch))
        clock.now += current["batch_seconds"]
        return batch

    images = np.zeros((70, 8, 8, 1), dtype=np.float32)
    timing = time_batched_passes(predict, images, batch_size=32, repeats=3, clock=clock)

    assert calls == [32, 32, 6] * 4
    assert [p.seconds for p in timing.passes] == pytest.approx([2.0, 1.0, 4.0])
    assert timing.median_images_per_sec == pytest.approx(70 / 2.0)
    assert len(timing.full_batch_ms) == 2 * 3  # the 6-image batch is not a full step


def _chunks(timer: StepTimer, clock: FakeClock, epochs: list[list[tuple[float, int, int]]]) -> None:
    """Feeds (seconds, steps, images) per chunk, epoch by epoch, each chunk starting where the last ended."""
    for chunks in epochs:
        timer.epoch_begin()
        for seconds, steps, images in chunks:
            timer.batch_begin()
            clock.now += seconds
            timer.batch_end(images, steps)
        clock.now += 100.0  # between epochs: never counted


def test_chunks_give_per_step_times_and_round_the_warmup_up_to_whole_chunks() -> None:
    clock = FakeClock()
    timer = StepTimer(clock=clock)
    # Chunks of 4 steps at batch 8: a slow first chunk (tracing), two 0.4 s chunks, then a short last chunk of
    # 2 steps holding 13 images (one full batch and a short one).
    _chunks(timer, clock, [[(9.0, 4, 32), (0.4, 4, 32), (0.4, 4, 32), (0.3, 2, 13)]])

    summary = summarize_steps(timer.steps, warmup_steps=3, batch_size=8)

    assert summary is not None
    assert summary.warmup_steps == 4  # 3 warm-up steps asked for: the whole first chunk is left out
    assert summary.timed_steps == 10 and summary.timed_images == 77
    assert summary.images_per_sec == pytest.approx(77 / 1.1)
    # Per-step times are chunk times over their steps; the chunk with the short batch is not a full-batch time.
    assert summary.full_batch_step_ms == pytest.approx((100.0, 100.0))
    assert summary.full_batch_steps == 8


def test_one_training_run_drops_its_warmup_once_and_every_epoch_is_a_repeat() -> None:
    clock = FakeClock()
    timer = StepTimer(clock=clock)
    _chunks(timer, clock, [[(5.0, 5, 50), (1.0, 5, 50)], [(1.0, 5, 50), (1.0, 5, 50)], [(2.0, 5, 50), (2.0, 5, 50)]])

    every_repeat = summarize_repeats(timer.steps, warmup_steps=5, batch_size=10, steps_per_execution=5)
    once = summarize_repeats(
        timer.steps, warmup_steps=5, batch_size=10, steps_per_execution=5, warmup_each_repeat=False
    )

    assert [r.images_per_sec for r in every_repeat.repeats] == [50.0, 50.0, 25.0]
    assert [r.images_per_sec for r in once.repeats] == [50.0, 50.0, 25.0]
    assert [r.timed_steps for r in once.repeats] == [5, 10, 10]  # the warm-up came out of the first epoch only
    assert once.warmup_steps == every_repeat.warmup_steps == 5 and once.steps_per_execution == 5
    assert once.step_ms == pytest.approx((200.0, 200.0, 200.0, 400.0, 400.0))


def test_spread_of_repeats() -> None:
    spread = Spread((100.0, 130.0, 90.0))
    assert (spread.median, spread.low, spread.high) == (100.0, 90.0, 130.0)
    assert spread.cv == pytest.approx(float(np.std([100, 130, 90], ddof=1) / np.mean([100, 130, 90])))
    assert Spread((5.0,)).cv is None


def test_every_throughput_figure_is_written_with_its_repeats_extremes_and_cv() -> None:
    recorder = RunRecorder()
    timing = TrainingTiming(
        tuple(
            ThroughputSummary(value, 20, 20 * 32, 20 * 32 / value, (1.0,) * 2, warmup_steps=10, full_batch_steps=20)
            for value in (100.0, 130.0, 90.0)
        ),
        steps_per_execution=10,
        warmup_steps=10,
    )

    assert record_training(recorder, timing, {"model": "m", "gpus": 0}) == 100.0

    samples = [s for s in recorder.samples if s.benchmark == "train_throughput"]
    rows = {(s.metric, s.metadata.get("repeat_index")): s for s in samples}
    assert rows[("images_per_sec", None)].value == 100.0
    assert rows[("images_per_sec_min", None)].value == 90.0 and rows[("images_per_sec_max", None)].value == 130.0
    assert rows[("images_per_sec_cv", None)].value == pytest.approx(Spread((100.0, 130.0, 90.0)).cv)
    assert [rows[("images_per_sec_repeat", i)].value for i in (1, 2, 3)] == [100.0, 130.0, 90.0]
    figure = rows[("images_per_sec", None)].metadata
    assert figure["repeats_timed"] == 3 and figure["steps"] == 20 and figure["steps_per_execution"] == 10
    assert rows[("step_time_ms_p50", None)].metadata["timed_steps"] == 60
    assert rows[("step_time_ms_p50", None)].metadata["timed_spans"] == 6


def test_chunked_steps_round_up_to_whole_chunks() -> None:
    assert chunked_steps(5, 30, 10) == (10, 30)
    assert chunked_steps(0, 25, 10) == (0, 30)
    assert chunked_steps(3, 7, 1) == (3, 7)


def test_the_yardstick_imports_nothing_of_the_payload(benchmarks_dir: Path) -> None:
    tree = ast.parse((benchmarks_dir / "yardstick.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and not any(name.split(".")[0] == "keras_bench" for name in imported)
    assert {"keras", "tensorflow", "jax"} <= imported


def test_the_first_short_batch_is_left_out_as_a_retrace_and_later_ones_count() -> None:
    clock = FakeClock()
    timer = StepTimer(clock=clock)
    # Two epochs of 45 images at batch 10 in chunks of 2 steps: 20, 20, then a chunk of one short batch of 5.
    # The first short chunk traces the training function for its new shape (3 s); the second one is quick.
    _chunks(timer, clock, [[(1.0, 2, 20), (1.0, 2, 20), (3.0, 1, 5)], [(1.0, 2, 20), (1.0, 2, 20), (0.25, 1, 5)]])

    spans = without_first_short_span(timer.steps, batch_size=10)
    timing = summarize_repeats(spans, warmup_steps=0, batch_size=10, warmup_each_repeat=False)

    assert [(s.epoch, s.images) for s in spans] == [(0, 20), (0, 20), (1, 20), (1, 20), (1, 5)]
    assert [r.images_per_sec for r in timing.repeats] == [20.0, 20.0]
    assert without_first_short_span(timer.steps[:2], batch_size=10) == list(timer.steps[:2])  # none short: all kept
