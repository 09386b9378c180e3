"""What the deploy suite measures for every model variant: file size, latency, throughput, accuracy.

Every measurement takes a ``predict(images) -> outputs`` callable, so a ``.tflite`` file in LiteRT and a
Keras model are timed by the same code. Framework-free (numpy and the standard library).
"""

from __future__ import annotations

import gzip
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_bench.timing.spread import Spread, percentile

Predict = Callable[[np.ndarray], np.ndarray]
GZIP_LEVEL = 9
LATENCY_WARMUP_RUNS = 10  # untimed batch-1 calls first (graph tracing, interpreter and delegate set-up)
THROUGHPUT_PASSES = 3  # timed passes after an untimed one and a sizing one; the median pass counts
MIN_PASS_SECONDS = 0.25  # a throughput pass repeats the test images until it lasts this long


@dataclass(frozen=True)
class FileSize:
    """A model file's size on disk, and gzipped."""

    bytes: int
    gzip_bytes: int  # gzip level GZIP_LEVEL of the file's bytes: what zero weights save in transfer and storage


def file_size(path: Path) -> FileSize:
    """Returns a file's size and its gzip (level 9) size."""
    content = path.read_bytes()
    return FileSize(len(content), len(gzip.compress(content, compresslevel=GZIP_LEVEL, mtime=0)))


@dataclass(frozen=True)
class Latency:
    """Batch-1 latency percentiles over the timed runs."""

    p50_ms: float
    p90_ms: float
    runs: int
    warmup_runs: int


def time_latency(
    predict: Predict,
    images: np.ndarray,
    runs: int,
    warmup_runs: int = LATENCY_WARMUP_RUNS,
    clock: Callable[[], float] = time.perf_counter,
    before_run: Callable[[], None] = lambda: None,
) -> Latency:
    """Times ``runs`` single-image predictions after ``warmup_runs`` untimed ones.

    The images are taken in turn (wrapping around), so the input changes from call to call.

    Args:
        predict: Predicts one batch; must return only once it is computed.
        images: Images to draw from, batch first.
        runs: Timed calls.
        warmup_runs: Untimed calls first.
        clock: Monotonic seconds; tests pass a fake.
        before_run: Called before each call, outside its timing; a stop check raises from here.

    Returns:
        The median and 90th percentile in milliseconds.
    """
    for index in range(warmup_runs):
        before_run()
        predict(images[index % len(images)][np.newaxis])
    times_ms = []
    for index in range(runs):
        image = images[index % len(images)][np.newaxis]
        before_run()
        started = clock()
        predict(image)
        times_ms.append((clock() - started) * 1000.0)
    return Latency(percentile(times_ms, 50), percentile(times_ms, 90), runs, warmup_runs)


@dataclass(frozen=True)
class Throughput:
    """Batched inference images/sec."""

    images_per_sec: float  # the median timed pass
    batch: int
    images: int  # images per timed pass: whole batches, the test images repeated to last MIN_PASS_SECONDS
    passes: int
    rates: tuple[float, ...] = ()  # every timed pass's images/sec

    @property
    def spread(self) -> Spread:
        """The timed passes' images/sec."""
        return Spread(self.rates or (self.images_per_sec,))


def throughput_images(images: np.ndarray, batch: int) -> np.ndarray:
    """Returns whole batches of images for a throughput pass: the images cut to a multiple of ``batch``,
    or repeated up to one batch when there are fewer."""
    if len(images) < batch:
        return np.resize(images, (batch, *images.shape[1:]))
    return images[: len(images) - len(images) % batch]


def time_throughput(
    predict: Predict,
    images: np.ndarray,
    batch: int,
    passes: int = THROUGHPUT_PASSES,
    min_pass_seconds: float = MIN_PASS_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
    before_batch: Callable[[], None] = lambda: None,
) -> Throughput:
    """Times batched prediction over whole batches of ``images``, the median of ``passes`` timed passes.

    One untimed pass first (tracing, tensor allocation), then one timed pass that sizes the others: a pass
    goes over the images as many times as it takes to last ``min_pass_seconds`` (a small model gets through a
    test set in milliseconds, too short to time).

    Args:
        predict: Predicts one batch; must return only once it is computed.
        images: The images, batch first.
        batch: Images per call.
        passes: Timed passes.
        min_pass_seconds: Shortest pass wanted.
        clock: Monotonic seconds; tests pass a fake.
        before_batch: Called before each batch; a stop check raises from here.

    Returns:
        Images/sec of the median pass.
    """
    inputs = throughput_images(images, batch)
    batches = [inputs[start : start + batch] for start in range(0, len(inputs), batch)]

    def run(rounds: int) -> float:
        started = clock()
        for _ in range(rounds):
            for chunk in batches:
                before_batch()
                predict(chunk)
        return clock() - started

    run(1)
    sizing_s = run(1)
    rounds = max(1, math.ceil(min_pass_seconds / sizing_s)) if sizing_s > 0 else 1
    rates = []
    for _ in range(passes):
        seconds = run(rounds)
        rates.append(rounds * len(inputs) / seconds if seconds > 0 else float("inf"))
    return Throughput(float(np.median(rates)), batch, rounds * len(inputs), passes, tuple(rates))


def accuracy(
    predict: Predict,
    images: np.ndarray,
    labels: np.ndarray,
    batch: int,
    before_batch: Callable[[], None] = lambda: None,
) -> float:
    """Returns the share of images whose highest output is their label, predicted in batches of ``batch``."""
    correct = 0
    for start in range(0, len(images), batch):
        before_batch()
        outputs = predict(images[start : start + batch])
        correct += int(np.sum(np.argmax(outputs, axis=-1) == labels[start : start + batch]))
    return correct / len(images)
