"""Image data sets as in-memory train/test splits: digits, CIFAR-10, an image directory, synthetic images.

``load_split(name, ...)`` is the entry point; every split holds float32 images (N, H, W, C) in [0, 1] and
integer labels. TFRecord files are written by ``keras_bench.data.tfrecords`` and read by ``keras_bench.data.pipeline``.
Only digits and synthetic data work without Keras; the others import it (and TensorFlow where they need it)
when called.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from keras_bench.errors import ParamError

DIGITS_CLASSES = 10
DIGITS_MAX_PIXEL = 16.0  # load_digits pixels are integers in 0..16
DIGITS_SIDE = 8
# The file scikit-learn's load_digits reads, inside its installed package: one row per image, 64 pixels then the label.
DIGITS_CSV = ("datasets", "data", "digits.csv.gz")
CIFAR10_CLASSES = 10
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
# Where Keras leaves CIFAR-10 once downloaded, relative to KERAS_HOME: Keras 3.15 and older Keras.
CIFAR10_CACHE_DIRS = ("datasets/cifar-10-batches-py-target/cifar-10-batches-py", "datasets/cifar-10-batches-py")
IMAGE_DIR_PREFIX = "image_dir:"
IMAGE_DIR_DEFAULT_SIZE = 224
SYNTHETIC_DEFAULT_SIZE = 32
SYNTHETIC_DEFAULT_CLASSES = 10
SYNTHETIC_DEFAULT_EXAMPLES = 1024  # training images when no limit is given; test gets a quarter
DATASET_EXAMPLES = ("digits", "cifar10", "synthetic", "image_dir:/path/to/class/folders")
RESIZE_CHUNK = 256  # images resized at a time, to bound the memory of the float copies


@dataclass(frozen=True)
class ImageSplit:
    """Train and test images (N, H, W, C) as float32 in [0, 1], with integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image, (H, W, C)."""
        return tuple(int(d) for d in self.x_train.shape[1:])


def stratified_split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Splits indices so each class keeps about the same share in train and test.

    Args:
        labels: One integer label per example.
        test_fraction: Share of each class that goes to test, rounded per class.
        seed: Seed for the shuffles; the same seed gives the same split.

    Returns:
        (train indices, test indices), each shuffled.
    """
    rng = np.random.default_rng(seed)
    test_parts = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        test_parts.append(members[: int(round(len(members) * test_fraction))])
    test = np.concatenate(test_parts)
    in_test = np.zeros(len(labels), dtype=bool)
    in_test[test] = True
    train = np.flatnonzero(~in_test)
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """Returns scikit-learn's 1797 digits as pixels (N, 8, 8) in 0..16 and labels (N,) int64, as ``load_digits`` does.

    Reads the CSV file inside the installed scikit-learn package without importing it: ``sklearn.datasets`` imports
    SciPy and takes ~2.2 CPU-s on a 2-core VM against ~0.03 s for the file (docs/performance.md, "The payload's
    start"). Falls back to ``load_digits`` when the file is not where scikit-learn keeps it.
    """
    spec = importlib.util.find_spec("sklearn")
    locations = spec.submodule_search_locations if spec is not None else None
    for location in locations or []:
        path = Path(location).joinpath(*DIGITS_CSV)
        if not path.is_file():
            continue
        with gzip.open(path, "rt", encoding="ascii") as stream:
            table = np.loadtxt(stream, delimiter=",")
        if table.ndim == 2 and table.shape[1] == DIGITS_SIDE * DIGITS_SIDE + 1:
            return table[:, :-1].reshape(-1, DIGITS_SIDE, DIGITS_SIDE), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # imported here: it costs ~2 CPU-s and only this fallback needs it

    digits = load_digits()
    return np.asarray(digits.images, dtype=np.float64), np.asarray(digits.target, dtype=np.int64)


def load_digits_split(seed: int, test_fraction: float = 0.2) -> ImageSplit:
    """Loads scikit-learn's bundled 8x8 digits (1797 images, no download) as a stratified split.

    Args:
        seed: Seed for the split.
        test_fraction: Share of each class held out for test.

    Returns:
        Images shaped (N, 8, 8, 1) scaled to [0, 1], labels 0-9.
    """
    pixels, labels = read_digits()
    images = (pixels.astype(np.float32) / DIGITS_MAX_PIXEL)[..., np.newaxis]
    train, test = stratified_split_indices(labels, test_fraction, seed)
    return ImageSplit(images[train], labels[train], images[test], labels[test], DIGITS_CLASSES)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batch files, allowing only the numpy globals an array needs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"CIFAR batch file refers to {module}.{name}, which is not allowed")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 python batch file (a pickled dict with ``data`` and ``labels``).

    Args:
        path: E.g. ``.../cifar-10-batches-py/data_batch_1``.

    Returns:
        Images (N, 32, 32, 3) uint8 and labels (N,) int64.
    """
    with path.open("rb") as stream:
        batch = _ArrayUnpickler(stream, encoding="bytes").load()
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    images = data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch[b"labels"], dtype=np.int64)


def keras_home() -> Path:
    """Returns Keras's cache root: ``$KERAS_HOME`` or ``~/.keras``, as Keras itself decides it."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def load_cifar10() -> ImageSplit:
    """Loads CIFAR-10 (50,000 train / 10,000 test, 32x32x3).

    An already extracted copy in Keras's cache is read directly (no archive hash check, no network).
    Otherwise ``keras.datasets.cifar10.load_data()`` downloads it, which needs internet.

    Returns:
        Images scaled to [0, 1], labels 0-9.
    """
    for relative in CIFAR10_CACHE_DIRS:
        directory = keras_home() / relative
        if (directory / CIFAR10_TEST_BATCH).is_file():
            parts = [read_cifar_batch(directory / name) for name in CIFAR10_TRAIN_BATCHES]
            x_test, y_test = read_cifar_batch(directory / CIFAR10_TEST_BATCH)
            x_train = np.concatenate([images for images, _ in parts])
            y_train = np.concatenate([labels for _, labels in parts])
            break
    else:
        import keras  # lazy: suites import this module, and --check must not load Keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    return ImageSplit(
        x_train.astype(np.float32) / 255.0,
        np.asarray(y_train, dtype=np.int64).reshape(-1),
        x_test.astype(np.float32) / 255.0,
        np.asarray(y_test, dtype=np.int64).reshape(-1),
        CIFAR10_CLASSES,
    )


def load_image_dir(directory: str, image_size: int, seed: int, test_fraction: float) -> ImageSplit:
    """Loads a directory of class subfolders (``root/cat/1.png``...) with ``keras.utils.image_dataset_from_directory``.

    Class labels follow the subfolders' alphabetical order. Needs TensorFlow installed (Keras reads the
    files through tf.data whatever the backend).

    Args:
        directory: The root folder.
        image_size: Every image is resized to image_size x image_size, 3 channels.
        seed: Seed for the train/test split.
        test_fraction: Share of the images held out for test, stratified by class.

    Returns:
        The split, images scaled to [0, 1].
    """
    if not Path(directory).is_dir():
        raise ParamError(f"param 'data': image directory not found, received {IMAGE_DIR_PREFIX}{directory}")
    import keras  # lazy: suites import this module, and --check must not load Keras

    dataset = keras.utils.image_dataset_from_directory(
        directory, image_size=(image_size, image_size), batch_size=None, shuffle=False, verbose=False
    )
    images, labels = [], []
    for image, label in dataset.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        raise ParamError(f"param 'data': no images found in {IMAGE_DIR_PREFIX}{directory}")
    x = np.stack(images).astype(np.float32) / 255.0
    y = np.asarray(labels, dtype=np.int64)
    train, test = stratified_split_indices(y, test_fraction, seed)
    return ImageSplit(x[train], y[train], x[test], y[test], len(dataset.class_names))


def synthetic_split(
    image_shape: tuple[int, int, int], num_classes: int, train_examples: int, test_examples: int, seed: int
) -> ImageSplit:
    """Makes random images uniform in [0, 1) with uniform random labels, on the host.

    Args:
        image_shape: One image, (H, W, C).
        num_classes: Labels are drawn from 0..num_classes-1.
        train_examples: Training images.
        test_examples: Test images.
        seed: The same seed gives the same images.

    Returns:
        The split.
    """
    rng = np.random.default_rng(seed)
    total = train_examples + test_examples
    x = rng.random((total, *image_shape), dtype=np.float32)
    y = rng.integers(0, num_classes, size=total, dtype=np.int64)
    return ImageSplit(x[:train_examples], y[:train_examples], x[train_examples:], y[train_examples:], num_classes)


def resize_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """Resizes (N, H, W, C) images to image_size x image_size with bilinear interpolation, in chunks.

    Args:
        images: Float images.
        image_size: The new side.

    Returns:
        Float32 images (N, image_size, image_size, C).
    """
    if images.shape[1:3] == (image_size, image_size):
        return images
    import keras  # lazy: suites import this module, and --check must not load Keras

    chunks = [
        keras.ops.convert_to_numpy(
            keras.ops.image.resize(images[start : start + RESIZE_CHUNK], (image_size, image_size))
        )
        for start in range(0, len(images), RESIZE_CHUNK)
    ]
    return np.concatenate(chunks).astype(np.float32)


def _set_channels(images: np.ndarray, channels: int) -> np.ndarray:
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1:
        return np.repeat(images, channels, axis=-1)
    if channels == 1:
        return np.asarray(images.mean(axis=-1, keepdims=True, dtype=np.float32))
    raise ParamError(f"param 'channels': cannot turn {have}-channel images into {channels}, received {channels}")


def _keep_classes(split: ImageSplit, num_classes: int, name: str) -> ImageSplit:
    if num_classes > split.num_classes:
        raise ParamError(f"param 'num_classes': data {name} has {split.num_classes} classes, received {num_classes}")
    if num_classes == split.num_classes:
        return split
    train, test = split.y_train < num_classes, split.y_test < num_classes
    return ImageSplit(split.x_train[train], split.y_train[train], split.x_test[test], split.y_test[test], num_classes)


def _limit(split: ImageSplit, limit: int, seed: int) -> ImageSplit:
    rng = np.random.default_rng(seed)
    train = np.sort(rng.permutation(len(split.x_train))[:limit])
    test = np.sort(rng.permutation(len(split.x_test))[:limit])
    return replace(
        split,
        x_train=split.x_train[train],
        y_train=split.y_train[train],
        x_test=split.x_test[test],
        y_test=split.y_test[test],
    )


def load_split(
    name: str,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    num_classes: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> ImageSplit:
    """Loads a data set by name as an in-memory train/test split.

    Names: ``digits`` (scikit-learn, 8x8x1), ``cifar10`` (32x32x3; Keras cache or download),
    ``image_dir:PATH`` (class subfolders of images), ``synthetic`` (random images).

    Args:
        name: The data set.
        image_size: Resize images to this square side; None keeps the native size (224 for an image
            directory, 32 for synthetic).
        channels: 1 or 3 to convert (grey repeated to RGB, RGB averaged to grey); None keeps them (3 for
            synthetic).
        num_classes: Keep only labels below this; None keeps all. For synthetic: the label count (10).
        limit: At most this many train and, separately, test images (a seeded random subset); for
            synthetic, the train count (default 1024; test gets a quarter, at least one).
        seed: Seed for splits, subsets and synthetic images.
        test_fraction: Share held out for test where the data set has no test split of its own.

    Returns:
        The split, images float32 in [0, 1].

    Raises:
        ParamError: For an unknown name, a missing directory, or a class count the data set lacks.
    """
    if name == "synthetic":
        side = image_size or SYNTHETIC_DEFAULT_SIZE
        train_examples = limit or SYNTHETIC_DEFAULT_EXAMPLES
        return synthetic_split(
            (side, side, channels or 3),
            num_classes or SYNTHETIC_DEFAULT_CLASSES,
            train_examples,
            max(1, train_examples // 4),
            seed,
        )
    if name == "digits":
        split = load_digits_split(seed=seed, test_fraction=test_fraction)
    elif name == "cifar10":
        split = load_cifar10()
    elif name.startswith(IMAGE_DIR_PREFIX):
        split = load_image_dir(name[len(IMAGE_DIR_PREFIX) :], image_size or IMAGE_DIR_DEFAULT_SIZE, seed, test_fraction)
    else:
        raise ParamError(
            f"param 'data': unknown data set, received {name!r}; expected one of {', '.join(DATASET_EXAMPLES)}"
        )
    if num_classes is not None:
        split = _keep_classes(split, num_classes, name)
    if limit is not None:
        split = _limit(split, limit, seed)
    if image_size is not None:
        split = replace(
            split, x_train=resize_images(split.x_train, image_size), x_test=resize_images(split.x_test, image_size)
        )
    if channels is not None:
        split = replace(
            split, x_train=_set_channels(split.x_train, channels), x_test=_set_channels(split.x_test, channels)
        )
    return split
