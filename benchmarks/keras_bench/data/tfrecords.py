"""TFRecord shards of an image split: ``tf.train.Example`` records with the image as uint8 bytes and an int64 label.

``write_tfrecords`` writes them (TensorFlow must be installed; the Keras backend does not matter);
``keras_bench.data.pipeline.dataset_from_tfrecords`` reads them back with tf.data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_bench.data.datasets import ImageSplit
from keras_bench.errors import ParamError

COMPRESSIONS = ("GZIP", "ZLIB", None)


def _tfrecord_path(directory: Path, part: str, shard: int, shards: int, compression: str | None) -> Path:
    suffix = ".gz" if compression == "GZIP" else ".zz" if compression == "ZLIB" else ""
    return directory / f"{part}-{shard:05d}-of-{shards:05d}.tfrecord{suffix}"


@dataclass(frozen=True)
class TFRecordFiles:
    """Shards written by ``write_tfrecords``; what ``pipeline.dataset_from_tfrecords`` needs to read them."""

    train: tuple[Path, ...]
    test: tuple[Path, ...]
    image_shape: tuple[int, ...]
    num_classes: int
    compression: str | None  # "GZIP", "ZLIB" or None


def write_tfrecords(split: ImageSplit, directory: Path, shards: int, compression: str | None = "GZIP") -> TFRecordFiles:
    """Writes a split as TFRecord shards of ``tf.train.Example`` (image as uint8 bytes, label as int64).

    Images are stored as uint8 (x 255, rounded), as image data sets usually are; reading them back gives
    the same images to within 1/510. Examples go round-robin over the shards. Needs TensorFlow installed.

    Args:
        split: The images to write.
        directory: Created if missing.
        shards: Files per part (train, test).
        compression: ``"GZIP"``, ``"ZLIB"`` or None.

    Returns:
        The files written.
    """
    try:
        import tensorflow as tf  # lazy: suites import this module, and --check must not load TensorFlow
    except ImportError as exc:
        raise ParamError("param 'data': TFRecord files need TensorFlow installed, received no tensorflow") from exc
    if compression not in COMPRESSIONS:
        raise ParamError(f"param 'compression': expected GZIP, ZLIB or none, received {compression!r}")
    directory.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type=compression or "")
    written: dict[str, tuple[Path, ...]] = {}
    for part, images, labels in (("train", split.x_train, split.y_train), ("test", split.x_test, split.y_test)):
        paths = tuple(_tfrecord_path(directory, part, shard, shards, compression) for shard in range(shards))
        writers = [tf.io.TFRecordWriter(str(path), options) for path in paths]
        try:
            pixels = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
            for index, (image, label) in enumerate(zip(pixels, labels, strict=True)):
                example = tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                        }
                    )
                )
                writers[index % shards].write(example.SerializeToString())
        finally:
            for writer in writers:
                writer.close()
        written[part] = paths
    return TFRecordFiles(written["train"], written["test"], split.image_shape, split.num_classes, compression)
