"""Suite ``transfer``: a pretrained backbone trained frozen, then fine-tuned, against the same model from scratch.

Phase ``frozen``: the pretrained backbone is frozen and only the head (Dropout + Dense) trains. Phase
``fine_tune``: the backbone (or only its top ``fine_tune_layers`` layers) is unfrozen and the whole model
trains on at a lower learning rate. Phase ``scratch``: the same architecture from random weights trains for
the same total number of epochs. Each phase is scored on the held-out split after every epoch.

BatchNormalization: the Keras transfer-learning guide calls the backbone with ``training=False`` so that its
BatchNormalization layers stay in inference mode after unfreezing (updating the pretrained moving statistics from
small batches of new data wrecks what the backbone learned). ``models.builders.build_model`` does call a frozen backbone
that way, but Keras 3 overrides that argument with fit's ``training=True`` (keras-team/keras#20285; pinned by
``test_fine_tuning_keeps_pretrained_batchnorm_statistics_while_scratch_updates_them``). What Keras does honour is
``trainable=False`` on a BatchNormalization layer, which then runs in inference mode. So ``unfreeze_backbone``
leaves every BatchNormalization layer of the backbone frozen: its moving statistics, scale and offset stay
pretrained in both phases. The scratch model trains all its BatchNormalization layers normally.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keras_bench.errors import ParamError
from keras_bench.models.backends import lean_imports
from keras_bench.models.builders import BACKBONE_LAYER, build_model, check_weights_file
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
from keras_bench.timing.rows import add_spread
from keras_bench.timing.throughput import summarize_repeats, without_first_short_span
from keras_bench.training.checkpoint import BackupPlan, finish_backups
from keras_bench.training.fit import (
    OPTIMIZERS,
    FitOutcome,
    FitSetup,
    compile_classifier,
    fit_classifier,
    resolve_dropout,
)

SUITE_NAME = "transfer"
FROZEN, FINE_TUNE, SCRATCH = "frozen", "fine_tune", "scratch"

# Keep names and defaults identical to benchmarks/suites/transfer.yaml.
TRANSFER_PARAMS = (
    text("model", "mobilenet_v2"),
    *data_params("cifar10"),
    text("weights", "imagenet"),
    positive_int("frozen_epochs", 5),
    positive_int("fine_tune_epochs", 5),
    non_negative_int("fine_tune_layers", 0),
    positive_float("frozen_learning_rate", 0.001),
    positive_float("fine_tune_learning_rate", 0.0001),
    positive_float("scratch_learning_rate", 0.001),
    choice("optimizer", "adam", OPTIMIZERS),
    fraction_or_auto("dropout", AUTO),
    positive_int("batch_size", 64),
    non_negative_int("warmup_steps", 5),
    non_negative_int("seed", 0),
    *checkpoint_params(),
)


@dataclass(frozen=True)
class TransferParams:
    """The transfer suite's params, typed."""

    model: str
    data: DataChoice
    weights: str  # "imagenet" or a path to a backbone weights file
    frozen_epochs: int
    fine_tune_epochs: int
    fine_tune_layers: int  # top backbone layers unfrozen for fine-tuning; 0 unfreezes the whole backbone
    frozen_learning_rate: float
    fine_tune_learning_rate: float
    scratch_learning_rate: float
    optimizer: str
    dropout: float | str
    batch_size: int
    warmup_steps: int  # leading steps of each phase left out of its images/sec (tracing after each compile)
    seed: int
    checkpoints: CheckpointChoice

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> TransferParams:
        """Types the effective params that ``resolve_params`` produced from ``TRANSFER_PARAMS``."""
        dropout = params["dropout"]
        return cls(
            model=str(params["model"]),
            data=DataChoice.from_params(params),
            weights=str(params["weights"]),
            frozen_epochs=int(params["frozen_epochs"]),
            fine_tune_epochs=int(params["fine_tune_epochs"]),
            fine_tune_layers=int(params["fine_tune_layers"]),
            frozen_learning_rate=float(params["frozen_learning_rate"]),
            fine_tune_learning_rate=float(params["fine_tune_learning_rate"]),
            scratch_learning_rate=float(params["scratch_learning_rate"]),
            optimizer=str(params["optimizer"]),
            dropout=dropout if isinstance(dropout, str) else float(dropout),
            batch_size=int(params["batch_size"]),
            warmup_steps=int(params["warmup_steps"]),
            seed=int(params["seed"]),
            checkpoints=CheckpointChoice.from_params(params),
        )


def unfreeze_backbone(model: Any, top_layers: int) -> int:
    """Makes the backbone trainable, or only its top ``top_layers`` layers; recompile afterwards.

    BatchNormalization layers stay frozen, hence in inference mode (see the module docstring).

    Args:
        model: A model from ``build_model`` with a layer named ``"backbone"``.
        top_layers: How many of the backbone's last layers to unfreeze; 0 unfreezes all.

    Returns:
        How many backbone layers are trainable now.

    Raises:
        ParamError: When ``top_layers`` exceeds the backbone's layer count.
    """
    backbone = model.get_layer(BACKBONE_LAYER)
    layers = backbone.layers
    if top_layers > len(layers):
        raise ParamError(f"param 'fine_tune_layers': the backbone has {len(layers)} layers, received {top_layers}")
    import keras  # loaded by the timed import already; at module level --check would load it

    backbone.trainable = True
    for index, layer in enumerate(layers):
        below_the_top = bool(top_layers) and index < len(layers) - top_layers
        layer.trainable = not (below_the_top or isinstance(layer, keras.layers.BatchNormalization))
    return top_layers or len(layers)


def _trainable_parameters(model: Any) -> int:
    return sum(int(weight.numpy().size) for weight in model.trainable_weights)


def _record_phase(
    recorder: RunRecorder,
    outcome: FitOutcome,
    p: TransferParams,
    metadata: dict[str, MetadataValue],
) -> None:
    record_curve(recorder, outcome, metadata)
    phase_metadata: dict[str, MetadataValue] = {
        **metadata,
        "split": "test",
        "epochs": outcome.epochs,
        "resumed_from_epoch": outcome.resumed_from_epoch,
    }
    last = outcome.curve[-1] if outcome.curve else None
    if last is not None and last.accuracy is not None:
        recorder.add("transfer", "accuracy", last.accuracy, "fraction", phase_metadata)
    if last is not None and last.loss is not None:
        recorder.add("transfer", "loss", last.loss, "", phase_metadata)
    wall_s = last.elapsed_wall_s if last is not None else 0.0
    recorder.add("transfer", "seconds", outcome.train_s, "s", {**phase_metadata, "wall_s": wall_s})
    # Every epoch of the phase is a repeat; the phase's first warm-up steps are left out once.
    spans = without_first_short_span(outcome.steps, p.batch_size)  # a retrace for the short last batch's shape
    timing = summarize_repeats(spans, p.warmup_steps, p.batch_size, warmup_each_repeat=False)
    if not timing.repeats:
        say(f"phase {metadata['phase']}: no timed steps after {p.warmup_steps} warm-up steps; images/sec not recorded")
    else:
        steps = sum(r.timed_steps for r in timing.repeats)
        add_spread(recorder, "transfer", timing.spread,
                   {**phase_metadata, "steps": steps, "warmup_steps": timing.warmup_steps})
    accuracy_text = "n/a" if last is None or last.accuracy is None else f"{last.accuracy:.4f}"
    say(f"phase {metadata['phase']}: accuracy={accuracy_text} after {outcome.epochs} epochs, {outcome.train_s:.1f}s")


def run_transfer(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    """Trains the pretrained model frozen then fine-tuned, and the same model from scratch, same data and budget.

    Args:
        params: Effective params from ``TRANSFER_PARAMS``.
        recorder: Receives samples and phase timings.
    """
    p = TransferParams.from_params(params)
    check_weights_file(p.weights)  # the machine's file system, before the backend's start-up

    with recorder.phase("import", "import"), lean_imports():
        import keras  # timed: the run's first Keras import
    say(f"imported keras {keras.__version__} (backend {keras.backend.backend()}) in {recorder.seconds['import']:.1f}s")

    with recorder.phase("data", "data"):
        split = p.data.load(p.seed)
    say(f"data: {p.data.name} {len(split.x_train)} train / {len(split.x_test)} test images {split.image_shape}")

    dropout, dropout_rule = resolve_dropout(p.dropout, len(split.x_train))
    common: dict[str, MetadataValue] = {
        **base_metadata(keras, p.model, p.data.name, split, p.batch_size),
        "optimizer": p.optimizer,
        "dropout": dropout,
        "dropout_rule": dropout_rule,
        "seed": p.seed,
    }
    checkpoints = p.checkpoints
    kept_backups: list[BackupPlan] = []

    def setup(phase: str, keep_backup: bool = False) -> FitSetup:
        return FitSetup(
            suite=SUITE_NAME,
            run_label=f"{p.model}-{p.data.name}-{phase}",
            recipe=recipe(params),
            checkpoint=checkpoints.checkpoint,
            checkpoint_above_epochs=checkpoints.above_epochs,
            tensorboard=checkpoints.tensorboard,
            part=phase,
            keep_backup=keep_backup,
        )

    def fit(model: Any, phase: str, epochs: int, keep_backup: bool = False) -> FitOutcome:
        say(f"phase {phase}: {epochs} epochs, {_trainable_parameters(model)} trainable parameters")
        with recorder.phase(phase, "compute"):
            return fit_classifier(
                model, split, epochs=epochs, batch_size=p.batch_size, setup=setup(phase, keep_backup), recorder=recorder
            )

    with recorder.phase("build", "compute"):
        keras.utils.set_random_seed(p.seed)
        model = build_model(
            p.model,
            image_shape(split),
            split.num_classes,
            weights=p.weights,
            dropout=dropout,
            freeze_backbone=True,
        )
        compile_classifier(model, p.optimizer, p.frozen_learning_rate)
    # The pretrained phases' backups are kept until the whole suite completes: a restart in a later phase
    # restores a finished phase (no epoch runs) instead of training it again.
    frozen = fit(model, FROZEN, p.frozen_epochs, keep_backup=True)
    kept_backups.extend([frozen.backup] if frozen.backup else [])
    pretrained = {**common, "weights": p.weights, "trainable_parameters": _trainable_parameters(model)}
    _record_phase(recorder, frozen, p, {**pretrained, "phase": FROZEN, "learning_rate": p.frozen_learning_rate})

    with recorder.phase("build", "compute"):
        unfrozen_layers = unfreeze_backbone(model, p.fine_tune_layers)
        compile_classifier(model, p.optimizer, p.fine_tune_learning_rate)  # trainable changes need a recompile
    fine_tuned = fit(model, FINE_TUNE, p.fine_tune_epochs, keep_backup=True)
    kept_backups.extend([fine_tuned.backup] if fine_tuned.backup else [])
    _record_phase(
        recorder,
        fine_tuned,
        p,
        {
            **pretrained,
            "phase": FINE_TUNE,
            "learning_rate": p.fine_tune_learning_rate,
            "trainable_parameters": _trainable_parameters(model),
            "unfrozen_layers": unfrozen_layers,
            "total_epochs": frozen.epochs + fine_tuned.epochs,
        },
    )

    with recorder.phase("build", "compute"):
        keras.utils.set_random_seed(p.seed)
        scratch_model = build_model(p.model, image_shape(split), split.num_classes, weights=None, dropout=dropout)
        compile_classifier(scratch_model, p.optimizer, p.scratch_learning_rate)
    scratch = fit(scratch_model, SCRATCH, p.frozen_epochs + p.fine_tune_epochs)
    _record_phase(
        recorder,
        scratch,
        p,
        {
            **common,
            "weights": "none",
            "phase": SCRATCH,
            "learning_rate": p.scratch_learning_rate,
            "trainable_parameters": _trainable_parameters(scratch_model),
            "total_epochs": scratch.epochs,
        },
    )
    finish_backups(kept_backups)


TRANSFER = Suite(
    name=SUITE_NAME,
    description="A pretrained keras.applications backbone trained frozen, then fine-tuned, against the same "
    "model from scratch under the same epoch budget - accuracy, loss, seconds and images/sec per phase.",
    params=TRANSFER_PARAMS,
    run=run_transfer,
)
