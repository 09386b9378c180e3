"""Suite ``pipeline``: one model's training images/sec under four ways of feeding it the same kind of images.

Feeds, in order: ``synthetic_on_device`` (one batch generated on the device, see ``keras_bench.data.pipeline``),
``numpy_arrays`` (in-memory arrays handed to ``fit``), ``tfrecord`` (GZIP TFRecord shards parsed by tf.data, no
cache, no prefetch) and ``tfrecord_cache_prefetch`` (the same with cache after decoding and
prefetch(AUTOTUNE)). Each feed trains a fresh model with the same seed, timed as the throughput suite times it.
The TFRecord shards are written to a temporary folder in the run directory and removed afterwards.
Needs KERAS_BACKEND=tensorflow (tf.data).
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from keras_bench.data.datasets import ImageSplit, synthetic_split
from keras_bench.data.pipeline import PipelineOptions, dataset_from_tfrecords, on_device_synthetic
from keras_bench.data.tfrecords import TFRecordFiles, write_tfrecords
from keras_bench.models.backends import BackendFacts, backend_facts, lean_imports, require_tensorflow
from keras_bench.models.builders import build_model, check_model
from keras_bench.params import ParamValue, choice, non_negative_int, positive_int, text
from keras_bench.progress import say
from keras_bench.recorder import RunRecorder, guarded
from keras_bench.results import MetadataValue
from keras_bench.suites.base import Suite
from keras_bench.suites.throughput import LEARNING_RATE, host_batches
from keras_bench.timing.rows import record_training
from keras_bench.timing.throughput import time_training
from keras_bench.training.checkpoint import run_directory

FEEDS = ("synthetic_on_device", "numpy_arrays", "tfrecord", "tfrecord_cache_prefetch")
COMPRESSIONS = ("GZIP", "ZLIB", "none")
CHANNELS = 3

# Keep names and defaults identical to benchmarks/suites/pipeline.yaml.
PIPELINE_PARAMS = (
    text("model", "small_cnn"),
    positive_int("image_size", 32),
    positive_int("num_classes", 10),
    positive_int("batch_size", 64),
    non_negative_int("warmup_steps", 10),
    positive_int("steps", 50),
    positive_int("repeats", 3),
    positive_int("examples", 4096),
    positive_int("shards", 4),
    choice("compression", "GZIP", COMPRESSIONS),
    non_negative_int("seed", 0),
)


@dataclass(frozen=True)
class PipelineParams:
    """The pipeline suite's params, typed."""

    model: str
    image_size: int
    num_classes: int
    batch_size: int
    warmup_steps: int  # untimed steps at the start of every repeat
    steps: int  # timed steps per repeat
    repeats: int
    examples: int  # training images written to TFRecord and held as arrays
    shards: int  # TFRecord files
    compression: str
    seed: int

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> PipelineParams:
        """Types the effective params that ``resolve_params`` produced from ``PIPELINE_PARAMS``."""
        return cls(
            model=str(params["model"]),
            image_size=int(params["image_size"]),
            num_classes=int(params["num_classes"]),
            batch_size=int(params["batch_size"]),
            warmup_steps=int(params["warmup_steps"]),
            steps=int(params["steps"]),
            repeats=int(params["repeats"]),
            examples=int(params["examples"]),
            shards=int(params["shards"]),
            compression=str(params["compression"]),
            seed=int(params["seed"]),
        )


def _feed_inputs(
    feed: str, model: Any, p: PipelineParams, split: ImageSplit, files: TFRecordFiles
) -> tuple[Any, Any, Any]:
    """Returns (model to train, x, y) for one feed; y is None for a tf.data dataset."""
    steps_per_epoch = p.warmup_steps + p.steps
    if feed == "synthetic_on_device":
        device = on_device_synthetic(model, p.batch_size, p.num_classes, p.seed)
        x, y = device.arrays(steps_per_epoch)
        return device.model, x, y
    if feed == "numpy_arrays":
        x, y = host_batches(split, p.batch_size, steps_per_epoch)
        return model, x, y
    cached = feed == "tfrecord_cache_prefetch"
    options = PipelineOptions(cache=cached, prefetch=cached, batch_size=p.batch_size, repeat=True, seed=p.seed)
    return model, dataset_from_tfrecords(files.train, files.image_shape, options, files.compression), None


def _measure_feed(
    feed: str, p: PipelineParams, split: ImageSplit, files: TFRecordFiles, facts: BackendFacts, recorder: RunRecorder
) -> float | None:
    import keras  # loaded by the timed import already; at module level --check would load it

    keras.utils.set_random_seed(p.seed)
    model = build_model(p.model, (p.image_size, p.image_size, CHANNELS), p.num_classes)
    model, x, y = _feed_inputs(feed, model, p, split, files)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE), loss="sparse_categorical_crossentropy")
    timing = time_training(
        model,
        x,
        y,
        batch_size=p.batch_size,
        warmup_steps=p.warmup_steps,
        steps=p.steps,
        repeats=p.repeats,
        stop=recorder.stop,
    )
    metadata: dict[str, MetadataValue] = {
        "model": p.model,
        "batch_size": p.batch_size,
        "precision": "float32",
        "gpus": min(1, facts.gpus),
        "data": "synthetic",
        "pipeline": feed,
        "examples": p.examples,
        "shards": p.shards if feed.startswith("tfrecord") else None,
        "compression": p.compression if feed.startswith("tfrecord") else None,
        "steps": p.steps,
        "warmup_steps": p.warmup_steps,
        "repeat": p.repeats,
        "backend": facts.name,
        "image_size": p.image_size,
        "num_classes": p.num_classes,
    }
    return record_training(recorder, timing, metadata)


def run_pipeline(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    """Writes TFRecord shards, then measures training images/sec for each feed in ``FEEDS``.

    Args:
        params: Effective params from ``PIPELINE_PARAMS``.
        recorder: Receives samples, phase timings and the errors of failed feeds.

    Raises:
        ParamError: On a backend other than TensorFlow, or for a model that cannot take the image size.
        RuntimeError: When every feed failed.
    """
    p = PipelineParams.from_params(params)
    with recorder.phase("import", "import"), lean_imports():
        import keras  # timed: the run's first Keras import

        facts = backend_facts()
        require_tensorflow("pipeline", "the pipeline suite (tf.data, TFRecord)")
    say(f"imported keras {keras.__version__} (backend {facts.name} {facts.version}, {facts.gpus} GPUs)")
    check_model(p.model, (p.image_size, p.image_size, CHANNELS))

    results: dict[str, float | None] = {}
    directory = tempfile.mkdtemp(prefix="pipeline-tfrecords-", dir=run_directory())
    try:
        with recorder.phase("data", "data"):
            split = synthetic_split((p.image_size, p.image_size, CHANNELS), p.num_classes, p.examples, 1, p.seed)
            started = time.perf_counter()
            files = write_tfrecords(
                split, Path(directory), p.shards, None if p.compression == "none" else p.compression
            )
            write_s = time.perf_counter() - started
        recorder.add(
            "tfrecord_write",
            "seconds",
            write_s,
            "s",
            {"examples": p.examples, "shards": p.shards, "compression": p.compression, "image_size": p.image_size},
        )
        say(f"wrote {p.examples} examples to {p.shards} TFRecord shards in {write_s:.1f}s")
        for feed in FEEDS:
            measure = partial(_measure_feed, feed, p, split, files, facts, recorder)
            value = results[feed] = guarded(recorder, f"pipeline {feed}", measure)
            keras.backend.clear_session()
            gc.collect()
            if value is not None:
                say(f"pipeline {feed}: train {value:.1f} images/s")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if all(value is None for value in results.values()):
        raise RuntimeError(f"all {len(FEEDS)} pipeline feeds failed; see the errors list")


PIPELINE = Suite(
    name="pipeline",
    description="One model's training images/sec fed from synthetic on-device data, in-memory arrays, "
    "TFRecord without prefetch and TFRecord with cache + prefetch(AUTOTUNE). Needs the TensorFlow backend.",
    params=PIPELINE_PARAMS,
    run=run_pipeline,
)
