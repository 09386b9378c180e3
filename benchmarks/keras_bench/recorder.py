"""What a suite run measures and where its time goes, collected as it happens."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Literal, TypeVar

from keras_bench.errors import BenchError
from keras_bench.progress import warn
from keras_bench.results import ErrorEntry, MetadataValue, Sample, metric_names
from keras_bench.stop import StopRequest

TimingBucket = Literal["import", "data", "compute"]
ERROR_MESSAGE_CHARS = 2000  # longest error message kept by add_error


class RunRecorder:
    """Collects samples and phase timings for one suite run.

    A suite wraps each stage in ``phase(...)``; the stage where an exception escapes is kept in
    ``failed_stage`` so the CLI can report where the run broke, and samples added before it stay.
    ``stop`` carries a SIGTERM from the CLI; phases honour it on entry and exit, and suites pass
    ``stop.check`` to their inner loops.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        """Creates an empty recorder.

        Args:
            clock: Monotonic seconds; tests pass a fake.
        """
        self._clock = clock
        self._metrics = metric_names()
        self.samples: list[Sample] = []
        self.seconds: dict[TimingBucket, float] = {"import": 0.0, "data": 0.0, "compute": 0.0}
        self.failed_stage: str | None = None
        self.stop = StopRequest()
        # Failures the suite survived and went on after (one combination of a grid); the CLI writes them
        # into the document's errors ahead of any failure that ended the run.
        self.errors: list[ErrorEntry] = []

    @contextmanager
    def phase(self, stage: str, bucket: TimingBucket) -> Iterator[None]:
        """Times a stage into one of the import / data / compute buckets.

        Args:
            stage: The stage name reported if it fails, e.g. ``"train"``.
            bucket: Which timing total the elapsed seconds count toward.
        """
        started = self._clock()
        try:
            self.stop.check()
            yield
            self.stop.check()
        except BaseException:
            if self.failed_stage is None:
                self.failed_stage = stage
            raise
        finally:
            self.seconds[bucket] += self._clock() - started

    def add(
        self,
        benchmark: str,
        metric: str,
        value: float,
        unit: str,
        metadata: Mapping[str, MetadataValue],
    ) -> Sample | None:
        """Records one sample; a non-finite value is skipped with a warning rather than written.

        Args:
            benchmark: What was measured, e.g. ``"train_throughput"``.
            metric: A name from the schema's closed list.
            value: The measurement.
            unit: Its unit, e.g. ``"images/s"``.
            metadata: The conditions of the measurement (strings, finite numbers, booleans, None).

        Returns:
            The recorded sample, or None when the value was skipped.

        Raises:
            ValueError: For a metric outside the closed list or a metadata value of another type; both are
                bugs in the suite, caught here rather than at validation time.
        """
        if metric not in self._metrics:
            raise ValueError(f"unknown metric for benchmark '{benchmark}'. Received: metric={metric!r}")
        for key, item in metadata.items():
            if not (item is None or isinstance(item, str | int | float | bool)) or (
                isinstance(item, float) and not math.isfinite(item)
            ):
                raise ValueError(f"metadata '{key}' of {benchmark}/{metric} is not JSON-safe. Received: {item!r}")
        if not math.isfinite(value):
            warn(f"skipped sample {benchmark}/{metric}: value {value} is not finite")
            return None
        sample = Sample(benchmark, metric, float(value), unit, dict(metadata))
        self.samples.append(sample)
        return sample

    def add_error(self, stage: str, error: BaseException, limit: int = ERROR_MESSAGE_CHARS) -> ErrorEntry:
        """Records a failure the suite survived, such as one grid point running out of memory.

        Args:
            stage: Where it failed, with what distinguishes it: ``"throughput model=resnet50 batch_size=256"``.
            error: The exception.
            limit: Longest message kept; backend errors (an out-of-memory report) can run to pages.

        Returns:
            The entry, as the document's ``errors`` list will carry it.
        """
        message = str(error).strip() or type(error).__name__
        if len(message) > limit:
            message = message[: limit - 3] + "..."
        entry = ErrorEntry(stage, type(error).__name__, message)
        self.errors.append(entry)
        warn(f"{stage}: {entry.type}: {message.splitlines()[0]}")
        return entry


T = TypeVar("T")


def guarded(recorder: RunRecorder, stage: str, action: Callable[[], T]) -> T | None:
    """Runs one part of a suite (a feed, a model variant); an ordinary failure becomes an ``errors`` entry and
    None, so the suite goes on with the other parts, while a stop request or a bad param ends the run.
    """
    try:
        with recorder.phase(stage, "compute"):
            return action()
    except BenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - one part failing must not lose the others
        recorder.failed_stage = None
        recorder.add_error(stage, exc)
        return None
