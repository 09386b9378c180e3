"""Keras callbacks that forward fit events to the payload's own timer and progress lines.

Imports Keras at module level: import this module only inside a suite run, after the timed Keras import.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras

from keras_bench.progress import say
from keras_bench.stop import StopRequest
from keras_bench.timing.steps import StepTimer


class _ChunkTimerCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Turns batch begin/end hooks into StepTimer spans of one chunk each: what fit and predict timing share.

    With ``steps_per_execution`` K at compile time, Keras calls the batch hooks once per chunk of K steps
    (``begin`` is the chunk's first step index, ``end`` its last), so the timer sees one span per chunk.
    """

    def __init__(self, timer: StepTimer, num_samples: int, batch_size: int) -> None:
        """Creates the callback.

        Args:
            timer: Receives the spans.
            num_samples: Images per epoch (fit) or per pass (predict), to size a short last batch and chunk.
            batch_size: Images per full batch.
        """
        super().__init__()
        self.timer = timer
        self.num_samples = num_samples
        self.batch_size = batch_size
        self._begin = 0

    def _span_begin(self, batch: int) -> None:
        self._begin = batch
        self.timer.batch_begin()

    def _span_end(self, batch: int) -> None:
        # Keras names a chunk's last step begin + K - 1 even when the epoch's data ends before it.
        last_step = -(-self.num_samples // self.batch_size) - 1
        end = min(batch, last_step)
        images = min(self.num_samples, (end + 1) * self.batch_size) - self._begin * self.batch_size
        self.timer.batch_end(images, end - self._begin + 1)


class StepTimerCallback(_ChunkTimerCallback):
    """Feeds fit's train batch begin/end events, with each span's image and step counts, to a StepTimer.

    The training loop runs without Python or a host sync between the steps of a chunk.
    """

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.timer.epoch_begin()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._span_begin(batch)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if logs and "loss" in logs:
            # Reading the loss waits for the span's last step to finish on backends that dispatch asynchronously
            # (GPU), so the timestamp below is the real end rather than the launch: one sync per span (chunk).
            float(logs["loss"])
        self._span_end(batch)


class PredictTimerCallback(_ChunkTimerCallback):
    """Times ``model.predict`` chunk by chunk with a StepTimer, as ``StepTimerCallback`` times training.

    Predict calls its compiled function (and these hooks) once per chunk of K batches. At each chunk end the
    callback reads one value of the chunk's last prediction back to the host: the one sync per chunk, so on an
    asynchronous device the time stamp is the chunk's real end. Every call of ``model.predict`` is one epoch of
    the timer (one pass). ``syncs`` counts the reads.
    """

    def __init__(self, timer: StepTimer, num_samples: int, batch_size: int) -> None:
        super().__init__(timer, num_samples, batch_size)
        self.syncs = 0

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.timer.epoch_begin()

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._span_begin(batch)

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        outputs = keras.tree.flatten((logs or {}).get("outputs"))
        if outputs and outputs[0] is not None:
            keras.ops.convert_to_numpy(outputs[0][-1])  # a few bytes back to the host: waits for the chunk
            self.syncs += 1
        self._span_end(batch)


class ProgressCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Prints one line per epoch: ``epoch 3/10 loss=0.2100 acc=0.9500 1.2s``."""

    def __init__(self, epochs: int, clock: Callable[[], float] = time.perf_counter) -> None:
        """Creates the callback.

        Args:
            epochs: Total epochs, for the ``3/10`` counter.
            clock: Monotonic seconds.
        """
        super().__init__()
        self.epochs = epochs
        self._clock = clock
        self._epoch_started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = self._clock()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        for key, label in (("loss", "loss"), ("accuracy", "acc")):
            value = logs.get(key)
            if value is not None and math.isfinite(float(value)):
                parts.append(f"{label}={float(value):.4f}")
        parts.append(f"{self._clock() - self._epoch_started:.1f}s")
        say(" ".join(parts))


class StopCheckCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Raises TerminatedError at the next batch end of fit, evaluate or predict once a stop was requested."""

    def __init__(self, stop: StopRequest) -> None:
        """Creates the callback.

        Args:
            stop: The request the CLI's SIGTERM handler sets.
        """
        super().__init__()
        self.stop = stop

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.stop.check()

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.stop.check()

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.stop.check()
