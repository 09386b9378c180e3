"""Inference throughput: repeated timed passes over a data set in fixed-size batches."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from keras_bench.timing.spread import Spread


@dataclass(frozen=True)
class InferencePass:
    """One full pass over the inputs."""

    images_per_sec: float
    seconds: float
    full_batch_ms: tuple[float, ...]  # per-batch wall time of the full-size batches


@dataclass(frozen=True)
class InferenceTiming:
    """The timed passes, warm-up pass excluded."""

    passes: tuple[InferencePass, ...]

    @property
    def median_images_per_sec(self) -> float:
        """Images/sec of the median pass (the spread's median)."""
        return self.spread.median

    @property
    def spread(self) -> Spread:
        """The timed passes' images/sec."""
        return Spread(tuple(p.images_per_sec for p in self.passes))

    @property
    def full_batch_ms(self) -> tuple[float, ...]:
        """Every full-size batch time over all timed passes."""
        return tuple(ms for p in self.passes for ms in p.full_batch_ms)


def time_batched_passes(
    predict_batch: Callable[[np.ndarray], object],
    inputs: np.ndarray,
    batch_size: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    before_batch: Callable[[], None] = lambda: None,
) -> InferenceTiming:
    """Runs one warm-up pass, then ``repeats`` timed passes of ``predict_batch`` over ``inputs``.

    ``predict_batch`` must return only once the batch is computed (Keras ``predict_on_batch`` returns
    numpy arrays, which forces that).

    Args:
        predict_batch: Predicts one batch.
        inputs: The images, batch dimension first.
        batch_size: Images per batch; the last batch may be shorter.
        repeats: Timed passes after the warm-up pass.
        clock: Monotonic seconds; tests pass a fake.
        before_batch: Called before each batch, outside its batch timing; a stop check raises from here.

    Returns:
        The timed passes.
    """
    count = len(inputs)
    batches = [inputs[start : start + batch_size] for start in range(0, count, batch_size)]
    for batch in batches:
        before_batch()
        predict_batch(batch)
    passes = []
    for _ in range(repeats):
        full_batch_ms = []
        pass_started = clock()
        for batch in batches:
            before_batch()
            started = clock()
            predict_batch(batch)
            if len(batch) == batch_size:
                full_batch_ms.append((clock() - started) * 1000.0)
        seconds = clock() - pass_started
        passes.append(InferencePass(count / seconds if seconds > 0 else float("inf"), seconds, tuple(full_batch_ms)))
    return InferenceTiming(tuple(passes))
