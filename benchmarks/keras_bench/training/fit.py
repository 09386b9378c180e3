"""Shared training for the accuracy, transfer and hparams suites: dropout rule, optimizer, compile, fit.

``fit_classifier`` runs ``model.fit`` with the held-out split evaluated after every epoch, a per-epoch curve,
an optional stop at a target accuracy, BackupAndRestore and TensorBoard (see ``training.checkpoint``), the step timer
and the SIGTERM check. Keras is imported only inside functions, and only after a suite's import phase.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_bench.data.datasets import ImageSplit
from keras_bench.errors import ParamError
from keras_bench.params import AUTO
from keras_bench.progress import say
from keras_bench.recorder import RunRecorder
from keras_bench.timing.steps import StepTimer, TrainStep
from keras_bench.training.checkpoint import (
    BackupPlan,
    EpochPoint,
    backup_callback,
    plan_backup,
    save_curve,
    tensorboard_callback,
    tensorboard_directory,
)

OPTIMIZERS = ("adam", "sgd")
SGD_MOMENTUM = 0.9  # "SGD with momentum": the usual 0.9
LOSS = "sparse_categorical_crossentropy"

# The default dropout rule (dropout == "auto"): 0.5 for a data set of 100 training images or fewer, 0.1 less
# for every tenfold more, never below 0.1 (reached at 1M images). Small data sets overfit, so they get the
# classic 0.5 of Srivastava et al.; ImageNet-sized ones need little. digits (1,438 train) -> 0.38,
# CIFAR-10 (50,000) -> 0.23, ImageNet (1.28M) -> 0.1.
DROPOUT_MAX = 0.5
DROPOUT_MIN = 0.1
DROPOUT_PER_DECADE = 0.1
DROPOUT_MAX_AT_IMAGES = 100
DROPOUT_RULE = "clip(0.5 - 0.1*log10(n_train/100), 0.1, 0.5)"


def auto_dropout(train_images: int) -> float:
    """Returns the default dropout rate for a training set of ``train_images`` images (see ``DROPOUT_RULE``).

    Args:
        train_images: Images in the training split; at least 1.

    Returns:
        The rate, rounded to two decimals so it reads well in reports.

    Raises:
        ValueError: For fewer than one image.
    """
    if train_images < 1:
        raise ValueError(f"auto_dropout needs at least one training image. Received: train_images={train_images}")
    rate = DROPOUT_MAX - DROPOUT_PER_DECADE * math.log10(train_images / DROPOUT_MAX_AT_IMAGES)
    return round(min(DROPOUT_MAX, max(DROPOUT_MIN, rate)), 2)


def resolve_dropout(value: float | str, train_images: int) -> tuple[float, str]:
    """Turns a dropout param (a rate or ``"auto"``) into a rate and the name of the rule that chose it.

    Returns:
        ``(rate, "auto")`` from ``auto_dropout`` or ``(rate, "fixed")`` for a rate given as a number.
    """
    if value == AUTO:
        return auto_dropout(train_images), AUTO
    return float(value), "fixed"


def optimizer_momentum(name: str) -> float | None:
    """Returns the momentum the named optimizer uses (SGD's), or None for optimizers without one."""
    return SGD_MOMENTUM if name == "sgd" else None


def make_optimizer(name: str, learning_rate: float) -> Any:
    """Builds a Keras optimizer by name: ``adam``, or ``sgd`` with momentum 0.9.

    Raises:
        ParamError: For another name, echoing it.
    """
    import keras  # lazy: suites import this module, and --check must not load Keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=SGD_MOMENTUM)
    raise ParamError(f"param 'optimizer': expected one of {', '.join(OPTIMIZERS)}, received {name!r}")


def compile_classifier(model: Any, optimizer: str, learning_rate: float) -> None:
    """Compiles a softmax classifier with sparse categorical cross-entropy and accuracy."""
    model.compile(optimizer=make_optimizer(optimizer, learning_rate), loss=LOSS, metrics=["accuracy"])


def _finite_or_none(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


class EpochCurve:
    """Turns fit's epoch events into ``EpochPoint``s, continuing a curve restored from a backup.

    Framework-free: ``curve_callbacks`` forwards Keras events here, and tests drive it with a fake clock.
    """

    def __init__(
        self,
        timer: StepTimer,
        epochs: int,
        restored: Sequence[EpochPoint] = (),
        target_accuracy: float | None = None,
        on_point: Callable[[Sequence[EpochPoint]], None] = lambda points: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Creates the curve.

        Args:
            timer: The step timer of the same fit; an epoch's training time is the sum of its steps.
            epochs: The epoch budget, for the ``epoch 3/30`` progress line.
            restored: Points of the epochs an interrupted run completed.
            target_accuracy: Held-out accuracy at which ``epoch_end`` reports the target reached.
            on_point: Called with all points after each new one (the backup's ``curve.json`` writer).
            clock: Monotonic seconds.
        """
        self.timer = timer
        self.epochs = epochs
        self.points: list[EpochPoint] = list(restored)
        self.target_accuracy = target_accuracy
        self._on_point = on_point
        self._clock = clock
        self._fit_started = clock()
        self._wall_before = restored[-1].elapsed_wall_s if restored else 0.0
        self._first_step = 0

    def fit_begin(self) -> None:
        """Starts the wall clock of this fit."""
        self._fit_started = self._clock()

    def epoch_begin(self) -> None:
        """Marks where this epoch's steps start in the timer."""
        self._first_step = len(self.timer.steps)

    def epoch_end(self, epoch: int, logs: Mapping[str, object]) -> bool:
        """Records the epoch that just ended and hands all points to ``on_point``.

        Args:
            epoch: Keras's 0-based epoch index (restored epochs included).
            logs: Fit's epoch logs: ``accuracy``, ``loss`` and, when validating, ``val_accuracy``, ``val_loss``.

        Returns:
            Whether the held-out accuracy reached the target.
        """
        train_s = sum(step.seconds for step in self.timer.steps[self._first_step :])
        before = self.points[-1].elapsed_train_s if self.points else 0.0
        point = EpochPoint(
            epoch=epoch + 1,
            accuracy=_finite_or_none(logs.get("val_accuracy")),
            loss=_finite_or_none(logs.get("val_loss")),
            train_accuracy=_finite_or_none(logs.get("accuracy")),
            train_loss=_finite_or_none(logs.get("loss")),
            train_s=train_s,
            elapsed_train_s=before + train_s,
            elapsed_wall_s=self._wall_before + self._clock() - self._fit_started,
        )
        self.points.append(point)
        self._on_point(self.points)
        return reached(point, self.target_accuracy)

    def announce(self) -> None:
        """Prints the progress line of the last recorded epoch: ``epoch 3/30 loss=… test_accuracy=… train 1.2s``."""
        point = self.points[-1]
        train_loss = "" if point.train_loss is None else f" loss={point.train_loss:.4f}"
        held_out = "" if point.accuracy is None else f" test_accuracy={point.accuracy:.4f}"
        say(f"epoch {point.epoch}/{self.epochs}{train_loss}{held_out} train {point.train_s:.1f}s")


def reached(point: EpochPoint, target_accuracy: float | None) -> bool:
    """Whether a point's held-out accuracy is at or above the target (never, without a target)."""
    return target_accuracy is not None and point.accuracy is not None and point.accuracy >= target_accuracy


def curve_callbacks(curve: EpochCurve) -> tuple[Any, Any]:
    """Returns two Keras callbacks: one feeds ``curve`` (and stops fit at the target), one prints its lines.

    The suites put the backup between them, so an ``epoch N/M`` line in the log means that epoch's weights and
    curve are on disk: a payload killed after it resumes after epoch N or later.
    """
    import keras  # lazy: suites import this module, and --check must not load Keras

    def on_epoch_end(epoch: int, logs: Mapping[str, object] | None = None) -> None:
        if curve.epoch_end(epoch, logs or {}):
            record.model.stop_training = True

    record = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs=None: curve.fit_begin(),
        on_epoch_begin=lambda epoch, logs=None: curve.epoch_begin(),
        on_epoch_end=on_epoch_end,
    )
    announce = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs=None: curve.announce())
    return record, announce


@dataclass(frozen=True)
class FitSetup:
    """How one fit is named, backed up and logged."""

    suite: str
    run_label: str  # names the TensorBoard run and the progress lines, e.g. "small_cnn-digits-adam-lr0.001"
    recipe: Mapping[str, object]  # what defines the run; its hash names the backup directory
    checkpoint: bool  # the suite's `checkpoint` param
    checkpoint_above_epochs: int  # back up only fits with more epochs than this
    tensorboard: bool  # the suite's `tensorboard` param
    part: str = ""  # distinguishes the fits of one suite run: a phase, a grid point
    keep_backup: bool = False  # keep the backup after the fit; the suite removes it with finish_backups


@dataclass(frozen=True)
class FitOutcome:
    """What one fit did, restored epochs included."""

    curve: tuple[EpochPoint, ...]  # every completed epoch, those of an interrupted earlier run first
    epochs_run: int  # epochs this process trained
    resumed_from_epoch: int  # completed epochs restored from a backup; 0 when it started fresh
    steps: tuple[TrainStep, ...]  # this process's training steps
    backup: BackupPlan | None  # None when the fit was not backed up
    tensorboard_dir: Path | None

    @property
    def epochs(self) -> int:
        """Completed epochs in all, restored ones included."""
        return self.curve[-1].epoch if self.curve else self.resumed_from_epoch

    @property
    def train_s(self) -> float:
        """Training-step seconds over all completed epochs, restarts included."""
        return self.curve[-1].elapsed_train_s if self.curve else 0.0

    def first_reaching(self, target_accuracy: float) -> EpochPoint | None:
        """Returns the first epoch whose held-out accuracy reached the target, or None."""
        return next((point for point in self.curve if reached(point, target_accuracy)), None)


def fit_classifier(
    model: Any,
    split: ImageSplit,
    *,
    epochs: int,
    batch_size: int,
    setup: FitSetup,
    recorder: RunRecorder,
    target_accuracy: float | None = None,
) -> FitOutcome:
    """Fits a compiled classifier, evaluating the held-out split after every epoch.

    Resumes from the fit's backup when an earlier run of the same recipe was interrupted; when the restored
    curve already reached the target, no further epoch runs.

    Args:
        model: A compiled, built Keras model.
        split: Training and held-out images.
        epochs: The epoch budget.
        batch_size: Training and evaluation batch size.
        setup: Naming, backup and TensorBoard settings.
        recorder: Its stop request is checked at every batch end.
        target_accuracy: Stop after the first epoch whose held-out accuracy reaches this; None trains all epochs.

    Returns:
        The outcome, with the curve of every completed epoch.
    """
    # imports Keras at module level: lazy, so --check does not
    from keras_bench.timing.callbacks import StepTimerCallback, StopCheckCallback

    backup = None
    if setup.checkpoint and epochs > setup.checkpoint_above_epochs:
        backup = plan_backup(setup.suite, setup.recipe, setup.part, delete_when_done=not setup.keep_backup)
    restored = backup.restored_curve if backup else ()
    resumed_from = backup.resumed_from_epoch if backup else 0
    if backup and resumed_from:
        say(f"{setup.run_label}: resuming after epoch {resumed_from} of {epochs} from backup {backup.directory}")
    if any(reached(point, target_accuracy) for point in restored):
        epochs = resumed_from  # reached before the interruption: restore, train no further

    timer = StepTimer()
    curve = EpochCurve(
        timer,
        epochs,
        restored,
        target_accuracy,
        on_point=(lambda points: save_curve(backup.directory, points)) if backup else (lambda points: None),
    )
    record, announce = curve_callbacks(curve)
    callbacks = [StepTimerCallback(timer, len(split.x_train), batch_size), record]
    if backup:
        callbacks.append(backup_callback(backup))
    log_dir = tensorboard_directory(setup.suite, setup.run_label) if setup.tensorboard else None
    logger = tensorboard_callback(log_dir) if log_dir else None
    if logger is None:
        log_dir = None
    else:
        callbacks.append(logger)
    callbacks += [announce, StopCheckCallback(recorder.stop)]

    try:
        model.fit(
            split.x_train,
            split.y_train,
            batch_size=batch_size,
            epochs=epochs,
            validation_data=(split.x_test, split.y_test),
            verbose=0,
            callbacks=callbacks,
        )
    finally:
        # BackupAndRestore leaves the restored epoch on the model, and every later fit of it would start there.
        model._initial_epoch = None
    epochs_run = len(curve.points) - len(restored)
    return FitOutcome(tuple(curve.points), epochs_run, resumed_from, tuple(timer.steps), backup, log_dir)
