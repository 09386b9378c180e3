"""Suite ``throughput``: training and inference images/sec over models x batch sizes x precisions x XLA.

Every combination is built, compiled (Adam 1e-3, sparse categorical cross-entropy, ``steps_per_execution``)
and trained for ``repeats`` epochs of ``warmup_steps + steps`` steps, each rounded up to whole chunks of
``steps_per_execution`` steps; see ``keras_bench.timing.throughput`` for what is timed (one host sync per chunk).
Synthetic data is generated once on the device (``keras_bench.data.pipeline.on_device_synthetic``); any other
``data`` is loaded into host memory and fed as arrays. A combination that fails (out of memory, a precision
the device lacks) is recorded in the document's ``errors`` and the suite goes on with the next one.
Uses only ``keras.*`` APIs, so it runs on every Keras backend.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_bench.data.datasets import ImageSplit, load_split
from keras_bench.data.pipeline import on_device_synthetic
from keras_bench.errors import BenchError
from keras_bench.models.backends import (
    PRECISIONS,
    BackendFacts,
    backend_facts,
    compile_options,
    lean_imports,
    precision_policy,
)
from keras_bench.models.builders import build_model, check_model
from keras_bench.params import ParamValue, choice, flag, list_of, non_negative_int, positive_int, text
from keras_bench.progress import say
from keras_bench.recorder import RunRecorder
from keras_bench.results import MetadataValue
from keras_bench.suites.base import Suite
from keras_bench.timing.rows import record_chunked_inference, record_training
from keras_bench.timing.throughput import chunked_steps, time_inference, time_training

SYNTHETIC = "synthetic"
LEARNING_RATE = 0.001
CHANNELS = 3

# Keep names and defaults identical to benchmarks/suites/throughput.yaml.
THROUGHPUT_PARAMS = (
    list_of(text("models", "resnet50"), ["resnet50", "mobilenet_v2"]),
    list_of(positive_int("batch_sizes", 32), [32, 64, 128]),
    list_of(choice("precisions", "float32", PRECISIONS), ["float32", "mixed_float16"]),
    list_of(flag("xla", False), [False, True]),
    positive_int("image_size", 224),
    positive_int("num_classes", 1000),
    text("data", SYNTHETIC),
    non_negative_int("warmup_steps", 10),
    positive_int("steps", 50),
    positive_int("repeats", 3),
    positive_int("steps_per_execution", 10),
    flag("inference", True),
    non_negative_int("seed", 0),
)


@dataclass(frozen=True)
class ThroughputParams:
    """The throughput suite's params, typed."""

    models: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    precisions: tuple[str, ...]
    xla: tuple[bool, ...]
    image_size: int
    num_classes: int  # for synthetic data; other data sets bring their own
    data: str  # "synthetic" (on the device) or a datasets.load_split name (host arrays)
    warmup_steps: int  # untimed steps at the start of every repeat
    steps: int  # timed steps per repeat
    repeats: int
    steps_per_execution: int  # steps per chunk: one call of the compiled loop, one timer span, one host sync
    inference: bool
    seed: int

    @property
    def chunk(self) -> int:
        """Steps per chunk: ``steps_per_execution``, at most ``steps``."""
        return min(self.steps_per_execution, self.steps)

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> ThroughputParams:
        """Types the effective params that ``resolve_params`` produced from ``THROUGHPUT_PARAMS``."""

        def items(name: str) -> list[Any]:
            value: Any = params[name]
            return list(value)

        return cls(
            models=tuple(str(v) for v in items("models")),
            batch_sizes=tuple(int(v) for v in items("batch_sizes")),
            precisions=tuple(str(v) for v in items("precisions")),
            xla=tuple(bool(v) for v in items("xla")),
            image_size=int(params["image_size"]),
            num_classes=int(params["num_classes"]),
            data=str(params["data"]),
            warmup_steps=int(params["warmup_steps"]),
            steps=int(params["steps"]),
            repeats=int(params["repeats"]),
            steps_per_execution=int(params["steps_per_execution"]),
            inference=bool(params["inference"]),
            seed=int(params["seed"]),
        )


@dataclass(frozen=True)
class Combination:
    """One point of the grid."""

    model: str
    batch_size: int
    precision: str
    xla: bool

    def label(self) -> str:
        """E.g. ``model=resnet50 batch_size=64 precision=float32 xla=false``."""
        return f"model={self.model} batch_size={self.batch_size} precision={self.precision} xla={str(self.xla).lower()}"


def host_batches(split: ImageSplit, batch_size: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns exactly ``batch_size * steps`` training examples, cycling through the split when it is smaller.

    Args:
        split: The loaded data.
        batch_size: Images per step.
        steps: Steps in one epoch.
    """
    order = np.resize(np.arange(len(split.x_train)), batch_size * steps)
    return split.x_train[order], split.y_train[order]


def _measure(
    combination: Combination,
    p: ThroughputParams,
    split: ImageSplit | None,
    facts: BackendFacts,
    recorder: RunRecorder,
) -> None:
    import keras  # loaded by the timed import already; at module level --check would load it

    shape = (p.image_size, p.image_size, CHANNELS)
    num_classes = split.num_classes if split is not None else p.num_classes
    metadata: dict[str, MetadataValue] = {
        "model": combination.model,
        "batch_size": combination.batch_size,
        "precision": combination.precision,
        "xla": combination.xla,
        "gpus": min(1, facts.gpus),  # fit without a distribution strategy runs on one device
        "data": p.data,
        "steps": p.steps,
        "warmup_steps": p.warmup_steps,
        "repeat": p.repeats,
        "backend": facts.name,
        "image_size": p.image_size,
        "num_classes": num_classes,
    }
    warmup_steps, timed_steps = chunked_steps(p.warmup_steps, p.steps, p.chunk)
    steps_per_epoch = warmup_steps + timed_steps
    with precision_policy(combination.precision):
        keras.utils.set_random_seed(p.seed)
        model = build_model(combination.model, shape, num_classes)
        if split is None:
            feed = on_device_synthetic(model, combination.batch_size, num_classes, p.seed)
            model = feed.model
            x, y = feed.arrays(steps_per_epoch)
        else:
            x, y = host_batches(split, combination.batch_size, steps_per_epoch)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
            loss="sparse_categorical_crossentropy",
            steps_per_execution=p.chunk,
            **compile_options(combination.xla),
        )
        timing = time_training(
            model,
            x,
            y,
            batch_size=combination.batch_size,
            warmup_steps=p.warmup_steps,
            steps=p.steps,
            repeats=p.repeats,
            stop=recorder.stop,
        )
        train = record_training(recorder, timing, metadata)
        line = f"{combination.label()}: train {train or 0:.1f} images/s"
        if p.inference:
            # Timed like training: chunks of steps_per_execution batches, one host sync per chunk, each pass's
            # first warmup_steps batches left out.
            inference = time_inference(
                model,
                x,
                batch_size=combination.batch_size,
                warmup_steps=p.warmup_steps,
                steps=p.steps,
                repeats=p.repeats,
                stop=recorder.stop,
            )
            line += f", inference {record_chunked_inference(recorder, inference, metadata) or 0:.1f} images/s"
    say(line)


def run_throughput(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    """Measures every combination of models x batch sizes x precisions x XLA.

    Args:
        params: Effective params from ``THROUGHPUT_PARAMS``.
        recorder: Receives samples, phase timings and the errors of failed combinations.

    Raises:
        ParamError: For an unknown model or data set, or an image size a model does not accept (before
            anything is measured).
        RuntimeError: When every combination failed.
    """
    p = ThroughputParams.from_params(params)

    with recorder.phase("import", "import"), lean_imports():
        import keras  # timed: the run's first Keras import

        facts = backend_facts()
    say(f"imported keras {keras.__version__} (backend {facts.name} {facts.version}, {facts.gpus} GPUs)")

    for name in p.models:
        check_model(name, (p.image_size, p.image_size, CHANNELS))
    split: ImageSplit | None = None
    if p.data != SYNTHETIC:
        with recorder.phase("data", "data"):
            split = load_split(p.data, image_size=p.image_size, channels=CHANNELS, seed=p.seed)
        say(f"data: {p.data} {len(split.x_train)} train images, {split.num_classes} classes")

    grid = [Combination(*point) for point in itertools.product(p.models, p.batch_sizes, p.precisions, p.xla)]
    failed = 0
    for combination in grid:
        try:
            with recorder.phase("throughput", "compute"):
                _measure(combination, p, split, facts, recorder)
        except BenchError:
            raise  # a stop request or a bad param ends the run
        except Exception as exc:  # noqa: BLE001 - one combination failing (e.g. out of memory) must not end the grid
            recorder.failed_stage = None
            recorder.add_error(f"throughput {combination.label()}", exc)
            failed += 1
        finally:
            keras.backend.clear_session()
            gc.collect()
    if failed == len(grid):
        raise RuntimeError(f"all {failed} throughput combinations failed; see the errors list")


THROUGHPUT = Suite(
    name="throughput",
    description="Training and inference images/sec over models x batch sizes x precision x XLA; warm-up "
    "excluded, timed steps repeated, step-time mean, median, p90 and spread.",
    params=THROUGHPUT_PARAMS,
    run=run_throughput,
)
