"""What the training suites (accuracy, transfer, hparams) share: data and checkpoint params, data loading,
the metadata every sample carries, and the recipe that names a run's backups. Imports no Keras.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keras_bench.data.datasets import ImageSplit, load_split
from keras_bench.models.backends import backend_name, gpu_count
from keras_bench.params import ParamSpec, ParamValue, flag, non_negative_int, text
from keras_bench.recorder import RunRecorder
from keras_bench.results import MetadataValue
from keras_bench.training.fit import FitOutcome

TEST_FRACTION = 0.2  # held out where a data set has no test split of its own (digits, image directories)
PRECISION = "float32"  # these suites train in float32; the throughput suite compares precisions
# Params that change where results and logs go, not what is trained: left out of the backup's recipe hash.
NOT_RECIPE = frozenset({"checkpoint", "checkpoint_above_epochs", "tensorboard"})


def data_params(data: str) -> tuple[ParamSpec, ...]:
    """Declares ``data``, ``image_size``, ``channels`` and ``limit`` (0 keeps the data set's own)."""
    return (
        text("data", data),
        non_negative_int("image_size", 0),
        non_negative_int("channels", 0),
        non_negative_int("limit", 0),
    )


def checkpoint_params() -> tuple[ParamSpec, ...]:
    """Declares ``checkpoint``, ``checkpoint_above_epochs`` and ``tensorboard``."""
    return (flag("checkpoint", True), non_negative_int("checkpoint_above_epochs", 3), flag("tensorboard", True))


@dataclass(frozen=True)
class DataChoice:
    """Which data set to train on and how to shape it."""

    name: str  # digits, cifar10, synthetic, image_dir:PATH
    image_size: int  # square side to resize to; 0 keeps the native size
    channels: int  # 1 or 3 to convert; 0 keeps the native channels
    limit: int  # at most this many train (and test) images; 0 keeps all

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> DataChoice:
        """Reads the params declared by ``data_params``."""
        return cls(str(params["data"]), int(params["image_size"]), int(params["channels"]), int(params["limit"]))

    def load(self, seed: int) -> ImageSplit:
        """Loads the split with ``data.datasets.load_split``."""
        return load_split(
            self.name,
            image_size=self.image_size or None,
            channels=self.channels or None,
            limit=self.limit or None,
            seed=seed,
            test_fraction=TEST_FRACTION,
        )


@dataclass(frozen=True)
class CheckpointChoice:
    """The checkpoint and TensorBoard params, typed."""

    checkpoint: bool
    above_epochs: int
    tensorboard: bool

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> CheckpointChoice:
        """Reads the params declared by ``checkpoint_params``."""
        return cls(bool(params["checkpoint"]), int(params["checkpoint_above_epochs"]), bool(params["tensorboard"]))


def image_shape(split: ImageSplit) -> tuple[int, int, int]:
    """Returns one image's (H, W, C), as ``models.builders.build_model`` takes it."""
    height, width, channels = split.image_shape
    return height, width, channels


def recipe(params: Mapping[str, ParamValue], **extra: object) -> dict[str, object]:
    """Returns what defines a training run: the params that change training, plus ``extra`` (a grid point)."""
    return {**{k: v for k, v in params.items() if k not in NOT_RECIPE}, **extra}


def base_metadata(keras: Any, model: str, data: str, split: ImageSplit, batch_size: int) -> dict[str, MetadataValue]:
    """Returns the metadata every sample of a training suite carries.

    Args:
        keras: The imported keras module (for the backend and the GPU count).
        model: The model name as given.
        data: The data set name as given.
        split: The loaded split, for the image shape and sizes.
        batch_size: Training batch size.

    Returns:
        model, batch_size, precision, data, image_shape, train_images, test_images, gpus, backend.
    """
    return {
        "model": model,
        "batch_size": batch_size,
        "precision": PRECISION,
        "data": data,
        "image_shape": "x".join(str(side) for side in split.image_shape),
        "train_images": len(split.x_train),
        "test_images": len(split.x_test),
        "gpus": min(1, gpu_count(backend_name())),  # fit without a distribution uses one
        "backend": keras.backend.backend(),
    }


def record_curve(recorder: RunRecorder, outcome: FitOutcome, metadata: Mapping[str, MetadataValue]) -> None:
    """Records one ``train_curve`` accuracy and loss sample per completed epoch, restored epochs included.

    Each sample's metadata adds ``split="test"``, ``epoch`` (1-based), ``elapsed_s`` (training seconds up to
    that epoch's end, evaluation excluded), ``wall_s`` (with evaluation) and ``restored`` (measured by an
    earlier, interrupted run of the same recipe).
    """
    for point in outcome.curve:
        point_metadata: dict[str, MetadataValue] = {
            **metadata,
            "split": "test",
            "epoch": point.epoch,
            "elapsed_s": point.elapsed_train_s,
            "wall_s": point.elapsed_wall_s,
            "restored": point.epoch <= outcome.resumed_from_epoch,
        }
        if point.accuracy is not None:
            recorder.add("train_curve", "accuracy", point.accuracy, "fraction", point_metadata)
        if point.loss is not None:
            recorder.add("train_curve", "loss", point.loss, "", point_metadata)
