"""tf.data feeds (arrays, TFRecord), synthetic images kept on the device, and the pipeline suite end to end."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from keras_bench.data.datasets import ImageSplit, synthetic_split
from keras_bench.data.pipeline import (
    PipelineOptions,
    apply_options,
    dataset_from_arrays,
    dataset_from_tfrecords,
    on_device_synthetic,
)
from keras_bench.data.tfrecords import write_tfrecords
from keras_bench.models.builders import build_model

tf = pytest.importorskip("tensorflow")

PIPELINE_TIMEOUT_S = 240
FEEDS = ["synthetic_on_device", "numpy_arrays", "tfrecord", "tfrecord_cache_prefetch"]


def test_tfrecord_shards_read_back_as_the_images_and_labels_written(tmp_path: Path) -> None:
    images = synthetic_split((6, 6, 3), 5, 20, 4, seed=2)
    labels = np.arange(20)  # one label per image, to pair them up after the shards are read interleaved
    split = ImageSplit(images.x_train, labels, images.x_test, np.arange(4), 20)
    files = write_tfrecords(split, tmp_path / "records", shards=3, compression="GZIP")
    assert [path.name for path in files.train] == [f"train-0000{i}-of-00003.tfrecord.gz" for i in range(3)]

    dataset = dataset_from_tfrecords(files.train, files.image_shape, PipelineOptions(batch_size=None), "GZIP")
    read = sorted(dataset.as_numpy_iterator(), key=lambda example: int(example[1]))

    assert [int(label) for _, label in read] == list(range(20))
    got = np.stack([image for image, _ in read])
    assert got.dtype == np.float32
    # Stored as uint8, so every pixel comes back within half a grey level.
    np.testing.assert_allclose(got, split.x_train, atol=0.5 / 255 + 1e-6)


def test_batch_switch_decides_whether_elements_are_batches() -> None:
    images = np.zeros((10, 4, 4, 1), np.float32)
    labels = np.arange(10)
    batched = dataset_from_arrays(images, labels, PipelineOptions(batch_size=4))
    single = dataset_from_arrays(images, labels, PipelineOptions(batch_size=None))
    assert [len(y) for _, y in batched.as_numpy_iterator()] == [4, 4, 2]
    assert next(iter(single.as_numpy_iterator()))[0].shape == (4, 4, 1)


def test_shuffle_switch_reorders_the_examples_and_keeps_them_all() -> None:
    labels = np.arange(64)
    images = np.zeros((64, 2, 2, 1), np.float32)
    plain = [int(y) for _, y in dataset_from_arrays(images, labels, PipelineOptions(batch_size=None))]
    shuffled = [
        int(y) for _, y in dataset_from_arrays(images, labels, PipelineOptions(batch_size=None, shuffle=True, seed=1))
    ]
    assert plain == list(range(64))
    assert shuffled != plain and sorted(shuffled) == plain


def test_cache_switch_decodes_each_example_only_once_over_two_passes() -> None:
    decoded = []

    def count(x: Any) -> Any:
        decoded.append(1)
        return x

    def counted_dataset(cache: bool) -> Any:
        decoded.clear()
        base = tf.data.Dataset.range(5).map(lambda x: (tf.py_function(count, [x], tf.int64), x))
        dataset = apply_options(base, PipelineOptions(batch_size=None, cache=cache))
        for _ in range(2):
            list(dataset.as_numpy_iterator())
        return len(decoded)

    assert counted_dataset(cache=False) == 10
    assert counted_dataset(cache=True) == 5


def test_prefetch_switch_adds_a_prefetch_stage_last() -> None:
    dataset = dataset_from_arrays(np.zeros((4, 2, 2, 1), np.float32), np.arange(4), PipelineOptions(prefetch=True))
    without = dataset_from_arrays(np.zeros((4, 2, 2, 1), np.float32), np.arange(4), PipelineOptions(prefetch=False))
    assert "Prefetch" in type(dataset).__name__
    assert "Prefetch" not in type(without).__name__


def test_on_device_synthetic_trains_the_real_model_from_a_stored_batch() -> None:
    model = build_model("small_cnn", (8, 8, 3), 4)
    before = [w.copy() for w in model.get_weights()]
    feed = on_device_synthetic(model, batch_size=6, num_classes=4, seed=0)
    images = feed.model.get_layer("device_images").images

    assert tuple(images.shape) == (6, 8, 8, 3) and not images.trainable
    assert len(feed.model.trainable_weights) == len(model.trainable_weights)
    x, y = feed.arrays(steps=3)
    assert x.shape == (18,) and y.shape == (18,) and y.max() < 4

    feed.model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    feed.model.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)

    stored = keras.ops.convert_to_numpy(images)
    np.testing.assert_allclose(
        feed.model.predict_on_batch(feed.indices), model.predict_on_batch(stored), rtol=1e-5, atol=1e-6
    )
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def _run_pipeline_suite(
    directory: Path, env: dict[str, str], argv: Callable[[Path, Path], list[str]], params: dict[str, object]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    suite = directory / "suite.json"
    suite.write_text(json.dumps({"schema_version": 1, "suite": "pipeline", "run_id": "r-pipe", "params": params}))
    out = directory / "results.json"
    process = subprocess.run(
        argv(suite, out),
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=PIPELINE_TIMEOUT_S,
        check=False,
    )
    document = json.loads(out.read_text(encoding="utf-8")) if out.exists() else None
    return process, document


@pytest.mark.slow
def test_pipeline_suite_measures_every_feed_and_removes_its_tfrecords(
    tmp_path: Path,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
    schema_validator: Any,
) -> None:
    params = {
        "image_size": 16,
        "batch_size": 8,
        "warmup_steps": 2,
        "steps": 4,
        "repeats": 2,
        "examples": 48,
        "shards": 3,
    }
    process, document = _run_pipeline_suite(tmp_path, payload_env, payload_argv, params)

    assert process.returncode == 0, process.stderr
    assert document is not None
    assert [e.message for e in schema_validator.iter_errors(document)] == []
    assert document["errors"] == []
    rows = [s for s in document["samples"] if s["benchmark"] == "train_throughput" and s["metric"] == "images_per_sec"]
    assert [row["metadata"]["pipeline"] for row in rows] == FEEDS
    assert all(row["value"] > 0 and row["metadata"]["backend"] == "tensorflow" for row in rows)
    assert {row["metadata"]["shards"] for row in rows if row["metadata"]["pipeline"].startswith("tfrecord")} == {3}
    p50 = [s for s in document["samples"] if s["metric"] == "step_time_ms_p50"]
    assert len(p50) == 4 and all(row["metadata"]["timed_steps"] == 4 * 2 for row in p50)
    assert any(s["benchmark"] == "tfrecord_write" for s in document["samples"])
    assert not list(tmp_path.glob("pipeline-tfrecords-*"))


def test_pipeline_suite_on_another_backend_says_it_needs_tensorflow(
    tmp_path: Path, payload_env: dict[str, str], payload_argv: Callable[[Path, Path], list[str]]
) -> None:
    pytest.importorskip("jax")
    env = {**payload_env, "KERAS_BACKEND": "jax"}
    process, document = _run_pipeline_suite(tmp_path, env, payload_argv, {})

    assert process.returncode == 2, process.stderr
    assert (
        "keras_bench: error: param 'pipeline': the pipeline suite (tf.data, TFRecord) needs "
        "KERAS_BACKEND=tensorflow, received backend jax" in process.stderr
    )
    assert document is not None and document["errors"][0]["stage"] == "params"
    assert not list(tmp_path.glob("pipeline-tfrecords-*"))


def test_pipeline_yaml_params_equal_the_payload_defaults(benchmarks_dir: Path) -> None:
    yaml = pytest.importorskip("yaml")
    from keras_bench.suites.pipeline import PIPELINE

    declared = yaml.safe_load((benchmarks_dir / "suites" / "pipeline.yaml").read_text(encoding="utf-8"))
    assert declared["name"] == "pipeline"
    assert declared["params"] == {spec.name: spec.default for spec in PIPELINE.params}
