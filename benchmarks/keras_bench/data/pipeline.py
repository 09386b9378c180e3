"""Feeding a model: tf.data pipelines (arrays or TFRecord files) and synthetic images kept on the device.

tf.data is TensorFlow's: ``dataset_from_arrays`` and ``dataset_from_tfrecords`` raise a one-line ParamError
on another Keras backend. ``on_device_synthetic`` works on every backend.

How synthetic data stays on the device: one batch of random images is generated with ``keras.random``
(which runs on the backend's default device, the first GPU when there is one) and stored in a non-trainable
variable of a small input layer. The model that ``fit`` trains takes a batch of int32 indices, ignores
their values and reads the images from that variable, then runs the real model on them. So per step only the
indices and the labels cross from host to device (2 x batch_size int32: 512 bytes at batch 64), never the
images (38 MB at 224x224x3, batch 64). The real model's weights are shared, not copied.

Imports Keras only inside functions: call these inside a suite run, after its timed import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keras_bench.models.backends import require_tensorflow

DEFAULT_SHUFFLE_BUFFER = 1024
INDEX_INPUT = "image_index"


@dataclass(frozen=True)
class PipelineOptions:
    """Which tf.data stages to apply, in the order cache -> shuffle -> batch -> prefetch."""

    cache: bool = False  # keep decoded examples in memory after the first pass
    shuffle: bool = False
    batch_size: int | None = 32  # None leaves the dataset unbatched
    prefetch: bool = False  # prefetch(AUTOTUNE): prepare the next batches while the model trains
    repeat: bool = False  # repeat forever (fit then needs steps_per_epoch)
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
    seed: int = 0


def apply_options(dataset: Any, options: PipelineOptions) -> Any:
    """Applies the switchable stages to a dataset of single examples.

    Args:
        dataset: A ``tf.data.Dataset`` of (image, label) examples.
        options: The stages to apply.

    Returns:
        The dataset with cache, shuffle, repeat, batch and prefetch applied as switched on.
    """
    tf = require_tensorflow("pipeline", "the tf.data pipeline")
    if options.cache:
        dataset = dataset.cache()
    if options.shuffle:
        dataset = dataset.shuffle(options.shuffle_buffer, seed=options.seed, reshuffle_each_iteration=True)
    if options.repeat:
        dataset = dataset.repeat()
    if options.batch_size is not None:
        dataset = dataset.batch(options.batch_size, drop_remainder=options.repeat)
    if options.prefetch:
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return dataset


def dataset_from_arrays(images: np.ndarray, labels: np.ndarray, options: PipelineOptions) -> Any:
    """Builds a tf.data pipeline over in-memory arrays.

    Args:
        images: (N, H, W, C) float32.
        labels: (N,) integers.
        options: Stages to apply.

    Returns:
        A ``tf.data.Dataset`` of (images, labels).

    Raises:
        ParamError: On a backend other than TensorFlow.
    """
    tf = require_tensorflow("pipeline", "the tf.data pipeline")
    return apply_options(tf.data.Dataset.from_tensor_slices((images, labels)), options)


def dataset_from_tfrecords(
    files: Sequence[Path],
    image_shape: tuple[int, ...],
    options: PipelineOptions,
    compression: str | None = "GZIP",
) -> Any:
    """Reads TFRecord shards written by ``tfrecords.write_tfrecords``: parse and decode in parallel, then stages.

    Args:
        files: The shards.
        image_shape: One image, (H, W, C), as written.
        options: Stages to apply after decoding (so ``cache`` keeps decoded images).
        compression: ``"GZIP"``, ``"ZLIB"`` or None, as written.

    Returns:
        A ``tf.data.Dataset`` of (float32 images in [0, 1], int64 labels).

    Raises:
        ParamError: On a backend other than TensorFlow.
    """
    tf = require_tensorflow("pipeline", "reading TFRecord files")
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    shape = [int(d) for d in image_shape]

    def decode(record: Any) -> tuple[Any, Any]:
        example = tf.io.parse_single_example(record, features)
        image = tf.reshape(tf.io.decode_raw(example["image"], tf.uint8), shape)
        return tf.cast(image, tf.float32) / 255.0, example["label"]

    records = tf.data.TFRecordDataset(
        [str(path) for path in files], compression_type=compression or "", num_parallel_reads=tf.data.AUTOTUNE
    )
    return apply_options(records.map(decode, num_parallel_calls=tf.data.AUTOTUNE), options)


@dataclass(frozen=True)
class DeviceData:
    """A model fed from one batch of images that lives on the device (see the module docstring)."""

    model: Any  # keras.Model taking int32 indices (batch_size,); compile and fit this one
    indices: np.ndarray  # (batch_size,) int32: one step's input
    labels: np.ndarray  # (batch_size,) int32: one step's labels, matching the device images

    @property
    def batch_size(self) -> int:
        """Images per step."""
        return len(self.indices)

    def arrays(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (indices, labels) for ``steps`` steps, to pass to ``fit`` with ``shuffle=False``.

        Args:
            steps: Steps in one epoch.
        """
        return np.tile(self.indices, steps), np.tile(self.labels, steps)


def on_device_synthetic(model: Any, batch_size: int, num_classes: int, seed: int) -> DeviceData:
    """Wraps a model so that it trains on one batch of random images generated on the device.

    Works on every Keras backend. Build it under the same dtype policy as the model; the images are
    float32 in [0, 1) and the model casts them as its first layer does for any input.

    Args:
        model: The model to feed; its input shape is read from ``model.inputs``.
        batch_size: Images per step; every batch ``fit`` sees must have this size.
        num_classes: Labels are drawn from 0..num_classes-1.
        seed: Seed for images and labels.

    Returns:
        The wrapping model and one step's indices and labels.
    """
    import keras  # lazy: suites import this module, and --check must not load Keras

    image_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    images = keras.random.uniform((batch_size, *image_shape), seed=seed, dtype="float32")
    labels = np.random.default_rng(seed).integers(0, num_classes, size=batch_size).astype(np.int32)

    class DeviceImages(keras.layers.Layer):  # type: ignore[misc]
        """Returns the stored batch of images whatever indices it is given."""

        def __init__(self) -> None:
            super().__init__(name="device_images", dtype="float32", trainable=False)
            self.images = self.add_weight(
                shape=(batch_size, *image_shape), initializer="zeros", trainable=False, name="images"
            )
            self.images.assign(images)

        def call(self, indices: Any) -> Any:
            return keras.ops.convert_to_tensor(self.images)

        def compute_output_shape(self, input_shape: Any) -> tuple[int, ...]:
            return (batch_size, *image_shape)

    indices = keras.Input(shape=(), batch_size=batch_size, dtype="int32", name=INDEX_INPUT)
    wrapper = keras.Model(indices, model(DeviceImages()(indices)), name=f"{model.name}_on_device_data")
    return DeviceData(wrapper, np.arange(batch_size, dtype=np.int32), labels)
