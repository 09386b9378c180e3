"""Step timing on a fake clock: warm-up exclusion, time between epochs excluded, short batches."""

from __future__ import annotations

import numpy as np
import pytest

from keras_bench.inference import time_batched_passes
from keras_bench.timing import StepTimer, TrainStep, percentile, summarize_steps


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
