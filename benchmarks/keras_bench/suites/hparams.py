"""Suite ``hparams``: a grid over optimizer x learning rate x dropout, each point trained for a fixed budget.

Every grid point starts from the same seed, trains ``epochs`` epochs and is scored on the held-out split.
``dropout`` values may be ``"auto"``: the documented rule in ``training.fit.auto_dropout`` picks a rate from the
training set size. Uses only ``keras.*`` APIs apart from TensorBoard (``tensorboard=false`` on other backends).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keras_bench.models.backends import lean_imports
from keras_bench.models.builders import build_model
from keras_bench.params import (
    AUTO,
    ParamValue,
    choice,
    fraction_or_auto,
    list_of,
    non_negative_int,
    positive_float,
    positive_int,
    text,
)
from keras_bench.progress import say
from keras_bench.recorder import RunRecorder
from keras_bench.results import MetadataValue
from keras_bench.suites.base import Suite
from keras_bench.suites.training_recipe import (
    CheckpointChoice,
    DataChoice,
    base_metadata,
    checkpoint_params,
    data_params,
    image_shape,
    recipe,
)
from keras_bench.training.fit import (
    OPTIMIZERS,
    FitSetup,
    compile_classifier,
    fit_classifier,
    optimizer_momentum,
    resolve_dropout,
)

SUITE_NAME = "hparams"

# Keep names and defaults identical to benchmarks/suites/hparams.yaml.
HPARAMS_PARAMS = (
    text("model", "small_cnn"),
    *data_params("digits"),
    list_of(choice("optimizers", "adam", OPTIMIZERS), ["adam", "sgd"]),
    list_of(positive_float("learning_rates", 0.001), [0.001, 0.0001]),
    list_of(fraction_or_auto("dropouts", AUTO), [AUTO]),
    positive_int("epochs", 10),
    positive_int("batch_size", 32),
    non_negative_int("seed", 0),
    *checkpoint_params(),
)


@dataclass(frozen=True)
class GridPoint:
    """One combination of the grid."""

    optimizer: str
    learning_rate: float
    dropout: float | str  # as given: a rate or "auto"


@dataclass(frozen=True)
class HparamsParams:
    """The hparams suite's params, typed."""

    model: str
    data: DataChoice
    optimizers: tuple[str, ...]
    learning_rates: tuple[float, ...]
    dropouts: tuple[float | str, ...]
    epochs: int
    batch_size: int
    seed: int
    checkpoints: CheckpointChoice

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> HparamsParams:
        """Types the effective params that ``resolve_params`` produced from ``HPARAMS_PARAMS``."""

        def items(name: str) -> Sequence[ParamValue]:
            value = params[name]
            return value if isinstance(value, list) else [value]

        return cls(
            model=str(params["model"]),
            data=DataChoice.from_params(params),
            optimizers=tuple(str(item) for item in items("optimizers")),
            learning_rates=tuple(float(item) for item in items("learning_rates")),
            dropouts=tuple(item if isinstance(item, str) else float(item) for item in items("dropouts")),
            epochs=int(params["epochs"]),
            batch_size=int(params["batch_size"]),
            seed=int(params["seed"]),
            checkpoints=CheckpointChoice.from_params(params),
        )

    def grid(self) -> list[GridPoint]:
        """Every combination, optimizer outermost, in the order the params list them."""
        return [
            GridPoint(optimizer, learning_rate, dropout)
            for optimizer, learning_rate, dropout in itertools.product(
                self.optimizers, self.learning_rates, self.dropouts
            )
        ]


def run_hparams(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    """Trains one model per grid point and records its held-out accuracy, loss and training seconds.

    Args:
        params: Effective params from ``HPARAMS_PARAMS``.
        recorder: Receives samples and phase timings.
    """
    p = HparamsParams.from_params(params)

    with recorder.phase("import", "import"), lean_imports():
        import keras  # timed: the run's first Keras import
    say(f"imported keras {keras.__version__} (backend {keras.backend.backend()}) in {recorder.seconds['import']:.1f}s")

    with recorder.phase("data", "data"):
        split = p.data.load(p.seed)
    say(f"data: {p.data.name} {len(split.x_train)} train / {len(split.x_test)} test images {split.image_shape}")

    common = {**base_metadata(keras, p.model, p.data.name, split, p.batch_size), "epochs": p.epochs, "seed": p.seed}
    grid = p.grid()
    scores: list[tuple[float, str]] = []
    for index, point in enumerate(grid, start=1):
        dropout, dropout_rule = resolve_dropout(point.dropout, len(split.x_train))
        label = f"{p.model}-{p.data.name}-{point.optimizer}-lr{point.learning_rate:g}-dropout{dropout:g}"
        say(f"grid point {index}/{len(grid)}: {label}")
        with recorder.phase("build", "compute"):
            keras.utils.set_random_seed(p.seed)
            model = build_model(p.model, image_shape(split), split.num_classes, dropout=dropout)
            compile_classifier(model, point.optimizer, point.learning_rate)
        setup = FitSetup(
            suite=SUITE_NAME,
            run_label=label,
            recipe=recipe(params, optimizer=point.optimizer, learning_rate=point.learning_rate, dropout=dropout),
            checkpoint=p.checkpoints.checkpoint,
            checkpoint_above_epochs=p.checkpoints.above_epochs,
            tensorboard=p.checkpoints.tensorboard,
            part=label,
        )
        with recorder.phase("train", "compute"):
            outcome = fit_classifier(
                model, split, epochs=p.epochs, batch_size=p.batch_size, setup=setup, recorder=recorder
            )
        metadata: dict[str, MetadataValue] = {
            **common,
            "optimizer": point.optimizer,
            "learning_rate": point.learning_rate,
            "momentum": optimizer_momentum(point.optimizer),
            "dropout": dropout,
            "dropout_rule": dropout_rule,
            "split": "test",
            "resumed_from_epoch": outcome.resumed_from_epoch,
        }
        last = outcome.curve[-1] if outcome.curve else None
        if last is not None and last.accuracy is not None:
            recorder.add("hparams", "accuracy", last.accuracy, "fraction", metadata)
            scores.append((last.accuracy, label))
        if last is not None and last.loss is not None:
            recorder.add("hparams", "loss", last.loss, "", metadata)
        recorder.add("hparams", "seconds", outcome.train_s, "s", metadata)
    if scores:
        best_accuracy, best_label = max(scores)
        say(f"best of {len(grid)} grid points: {best_label} accuracy={best_accuracy:.4f}")


HPARAMS = Suite(
    name=SUITE_NAME,
    description="A grid over optimizer (Adam, SGD with momentum 0.9) x learning rate x dropout with a fixed "
    "epoch budget - held-out accuracy, loss and training seconds per grid point.",
    params=HPARAMS_PARAMS,
    run=run_hparams,
)
