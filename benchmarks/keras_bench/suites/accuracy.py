"""Suite ``accuracy``: train until the held-out accuracy reaches a target, or until an epoch budget runs out.

Evaluates the held-out split after every epoch and records the curve (accuracy and loss against epoch and
training time), then time_to_accuracy_s and epochs_to_accuracy when the target was reached. Time to accuracy
counts training steps only (the per-epoch evaluation, backups and logs are left out; ``wall_s`` in the
metadata includes them). Backed up every epoch with BackupAndRestore, so a restarted payload resumes.
Uses only ``keras.*`` APIs apart from TensorBoard, so it runs on any Keras backend with ``tensorboard=false``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from keras_bench.models.backends import lean_imports
from keras_bench.models.builders import build_model
from keras_bench.params import (
    AUTO,
    ParamValue,
    choice,
    fraction_or_auto,
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
    record_curve,
)
from keras_bench.training.fit import (
    OPTIMIZERS,
    FitOutcome,
    FitSetup,
    compile_classifier,
    fit_classifier,
    optimizer_momentum,
    resolve_dropout,
)

SUITE_NAME = "accuracy"

# Keep names and defaults identical to benchmarks/suites/accuracy.yaml.
ACCURACY_PARAMS = (
    text("model", "small_cnn"),
    *data_params("digits"),
    positive_float("target_accuracy", 0.95),
    positive_int("max_epochs", 30),
    positive_int("batch_size", 32),
    positive_float("learning_rate", 0.001),
    choice("optimizer", "adam", OPTIMIZERS),
    fraction_or_auto("dropout", AUTO),
    non_negative_int("seed", 0),
    *checkpoint_params(),
)


@dataclass(frozen=True)
class AccuracyParams:
    """The accuracy suite's params, typed."""

    model: str
    data: DataChoice
    target_accuracy: float  # held-out accuracy to reach; above 1 means "never", i.e. train the whole budget
    max_epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    dropout: float | str  # a rate, or "auto" for training.auto_dropout
    seed: int
    checkpoints: CheckpointChoice

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> AccuracyParams:
        """Types the effective params that ``resolve_params`` produced from ``ACCURACY_PARAMS``."""
        dropout = params["dropout"]
        return cls(
            model=str(params["model"]),
            data=DataChoice.from_params(params),
            target_accuracy=float(params["target_accuracy"]),
            max_epochs=int(params["max_epochs"]),
            batch_size=int(params["batch_size"]),
            learning_rate=float(params["learning_rate"]),
            optimizer=str(params["optimizer"]),
            dropout=dropout if isinstance(dropout, str) else float(dropout),
            seed=int(params["seed"]),
            checkpoints=CheckpointChoice.from_params(params),
        )


def _record_result(
    recorder: RunRecorder, outcome: FitOutcome, p: AccuracyParams, metadata: dict[str, MetadataValue]
) -> None:
    reached = outcome.first_reaching(p.target_accuracy)
    result_metadata: dict[str, MetadataValue] = {
        **metadata,
        "split": "test",
        "target_reached": reached is not None,
        "resumed_from_epoch": outcome.resumed_from_epoch,
    }
    if reached is not None:
        reached_metadata = {**result_metadata, "wall_s": reached.elapsed_wall_s, "accuracy": reached.accuracy}
        recorder.add("train", "time_to_accuracy_s", reached.elapsed_train_s, "s", reached_metadata)
        recorder.add("train", "epochs_to_accuracy", reached.epoch, "epochs", reached_metadata)
        say(
            f"target accuracy {p.target_accuracy} reached at epoch {reached.epoch} after "
            f"{reached.elapsed_train_s:.1f}s of training ({reached.elapsed_wall_s:.1f}s with evaluation)"
        )
    else:
        best = max((point.accuracy for point in outcome.curve if point.accuracy is not None), default=None)
        best_text = "no held-out accuracy" if best is None else f"best {best:.4f}"
        say(f"target accuracy {p.target_accuracy} not reached in {outcome.epochs} epochs ({best_text})")
    recorder.add("train", "epochs", outcome.epochs, "epochs", result_metadata)
    recorder.add("train", "seconds", outcome.train_s, "s", result_metadata)
    last = outcome.curve[-1] if outcome.curve else None
    if last is not None and last.accuracy is not None:
        recorder.add("train", "accuracy", last.accuracy, "fraction", {**result_metadata, "epoch": last.epoch})
    if last is not None and last.loss is not None:
        recorder.add("train", "loss", last.loss, "", {**result_metadata, "epoch": last.epoch})


def run_accuracy(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    """Trains until the target held-out accuracy or the epoch budget, recording the curve and the result.

    Args:
        params: Effective params from ``ACCURACY_PARAMS``.
        recorder: Receives samples and phase timings.
    """
    p = AccuracyParams.from_params(params)

    with recorder.phase("import", "import"), lean_imports():
        import keras  # timed: the run's first Keras import
    say(f"imported keras {keras.__version__} (backend {keras.backend.backend()}) in {recorder.seconds['import']:.1f}s")

    with recorder.phase("data", "data"):
        split = p.data.load(p.seed)
    say(f"data: {p.data.name} {len(split.x_train)} train / {len(split.x_test)} test images {split.image_shape}")

    dropout, dropout_rule = resolve_dropout(p.dropout, len(split.x_train))
    metadata: dict[str, MetadataValue] = {
        **base_metadata(keras, p.model, p.data.name, split, p.batch_size),
        "optimizer": p.optimizer,
        "learning_rate": p.learning_rate,
        "momentum": optimizer_momentum(p.optimizer),
        "dropout": dropout,
        "dropout_rule": dropout_rule,
        "seed": p.seed,
        "target_accuracy": p.target_accuracy,
        "max_epochs": p.max_epochs,
    }

    with recorder.phase("build", "compute"):
        keras.utils.set_random_seed(p.seed)
        model = build_model(p.model, image_shape(split), split.num_classes, dropout=dropout)
        compile_classifier(model, p.optimizer, p.learning_rate)

    label = f"{p.model}-{p.data.name}-{p.optimizer}-lr{p.learning_rate:g}-dropout{dropout:g}-seed{p.seed}"
    setup = FitSetup(
        suite=SUITE_NAME,
        run_label=label,
        recipe=recipe(params),
        checkpoint=p.checkpoints.checkpoint,
        checkpoint_above_epochs=p.checkpoints.above_epochs,
        tensorboard=p.checkpoints.tensorboard,
    )
    with recorder.phase("train", "compute"):
        outcome = fit_classifier(
            model,
            split,
            epochs=p.max_epochs,
            batch_size=p.batch_size,
            setup=setup,
            recorder=recorder,
            target_accuracy=p.target_accuracy,
        )
    metadata["checkpointed"] = outcome.backup is not None
    record_curve(recorder, outcome, metadata)
    _record_result(recorder, outcome, p, metadata)


ACCURACY = Suite(
    name=SUITE_NAME,
    description="Train to a target held-out accuracy or an epoch budget - time and epochs to accuracy and the "
    "per-epoch accuracy curve; backed up every epoch so a restarted run resumes.",
    params=ACCURACY_PARAMS,
    run=run_accuracy,
)
