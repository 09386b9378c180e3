"""Where a training run keeps its backups and TensorBoard logs, and the Keras callbacks that write them.

The run directory is the payload's working directory (the orchestrator starts the payload there), or
``$KERAS_BENCH_WORKDIR`` when set. A fit longer than a few epochs backs itself up after every epoch with
``keras.callbacks.BackupAndRestore`` under ``<run dir>/checkpoints/<suite>-<recipe hash>[-<part>]``, so a payload
started again with the same suite document resumes at the last completed epoch. Next to Keras's own files the
backup holds ``curve.json``, the per-epoch points measured so far, so the accuracy curve and the training time
survive the restart too. TensorBoard logs go to ``<run dir>/tensorboard/<suite>/<run label>``.

Keras is imported only inside the functions that build callbacks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from keras_bench.progress import warn

WORKDIR_ENV = "KERAS_BENCH_WORKDIR"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
KERAS_METADATA_FILE = "training_metadata.json"  # written by BackupAndRestore: {"epoch": completed epochs, ...}
CURVE_FILE = "curve.json"
RECIPE_HASH_CHARS = 12


def run_directory() -> Path:
    """Returns the run directory: ``$KERAS_BENCH_WORKDIR`` when set and non-empty, else the working directory."""
    configured = os.environ.get(WORKDIR_ENV, "").strip()
    return Path(configured) if configured else Path.cwd()


def recipe_hash(recipe: Mapping[str, object]) -> str:
    """Returns a short, stable hash of what defines a training run, so a different recipe never resumes it.

    Args:
        recipe: JSON-safe values (params, grid point, phase); key order does not matter.

    Returns:
        The first 12 hex digits of the SHA-256 of the canonical JSON.
    """
    canonical = json.dumps(dict(recipe), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:RECIPE_HASH_CHARS]


def safe_label(text: str) -> str:
    """Turns free text into one path component: letters, digits, ``.``, ``_``, ``-`` and ``=`` only."""
    cleaned = re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("._")
    return cleaned or "run"


@dataclass(frozen=True)
class EpochPoint:
    """One completed epoch as the training helpers measured it; ``curve.json`` holds a list of these."""

    epoch: int  # 1-based, counted across restarts
    accuracy: float | None  # on the held-out split; None when it was not evaluated
    loss: float | None  # held-out loss
    train_accuracy: float | None  # fit's running training metrics over the epoch (dropout active)
    train_loss: float | None
    train_s: float  # this epoch's training steps only: evaluation, checkpointing and logging excluded
    elapsed_train_s: float  # train_s summed over epochs 1..epoch, restarts included
    elapsed_wall_s: float  # fit wall time up to this epoch's end, evaluation included, summed over restarts


@dataclass(frozen=True)
class BackupPlan:
    """Where one fit backs up, and what an earlier, interrupted fit of the same recipe left there."""

    directory: Path
    resumed_from_epoch: int  # completed epochs found in the backup; 0 when starting fresh
    restored_curve: tuple[EpochPoint, ...]  # the points of those epochs that curve.json kept
    delete_when_done: bool  # False when a later part of the suite still needs it (see finish_backups)


def saved_epoch(directory: Path) -> int:
    """Returns how many epochs the backup in ``directory`` completed, 0 when there is none or it is unreadable."""
    path = directory / KERAS_METADATA_FILE
    try:
        epoch = json.loads(path.read_text(encoding="utf-8"))["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return epoch if isinstance(epoch, int) and epoch > 0 else 0


def load_curve(directory: Path, up_to_epoch: int) -> tuple[EpochPoint, ...]:
    """Reads the points an interrupted run saved, keeping those the weights backup also covers.

    Args:
        directory: The backup directory.
        up_to_epoch: Completed epochs of the weights backup; later points (saved just before a kill that
            came ahead of the weights) are dropped.

    Returns:
        The points in epoch order; empty when there is no readable ``curve.json``.
    """
    try:
        raw = json.loads((directory / CURVE_FILE).read_text(encoding="utf-8"))
        points = tuple(EpochPoint(**entry) for entry in raw)
    except (OSError, ValueError, TypeError):
        return ()
    return tuple(point for point in points if point.epoch <= up_to_epoch)


def save_curve(directory: Path, points: Sequence[EpochPoint]) -> None:
    """Writes ``curve.json`` atomically (temporary file, then rename), creating the directory if needed."""
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{CURVE_FILE}.tmp"
    temporary.write_text(json.dumps([asdict(point) for point in points]), encoding="utf-8")
    os.replace(temporary, directory / CURVE_FILE)


def plan_backup(
    suite: str, recipe: Mapping[str, object], part: str = "", *, delete_when_done: bool = True
) -> BackupPlan:
    """Names the backup directory of one fit and reads what a previous attempt left in it.

    Args:
        suite: The suite name, first in the directory name.
        recipe: What defines the run (see ``recipe_hash``).
        part: Distinguishes fits of one suite run (``"frozen"``, a grid point); empty for a single fit.
        delete_when_done: Whether BackupAndRestore removes the backup when its fit completes.

    Returns:
        The plan; ``resumed_from_epoch`` is what BackupAndRestore will restore.
    """
    name = f"{suite}-{recipe_hash(recipe)}" + (f"-{safe_label(part)}" if part else "")
    directory = run_directory() / CHECKPOINTS_DIR / name
    epoch = saved_epoch(directory)
    return BackupPlan(directory, epoch, load_curve(directory, epoch) if epoch else (), delete_when_done)


def finish_backups(plans: Sequence[BackupPlan]) -> None:
    """Removes backups kept past their own fit, once the whole suite run has completed."""
    for plan in plans:
        shutil.rmtree(plan.directory, ignore_errors=True)


def backup_callback(plan: BackupPlan) -> Any:
    """Returns the ``keras.callbacks.BackupAndRestore`` for a plan: a backup at every epoch end."""
    import keras  # lazy: suites import this module, and --check must not load Keras

    plan.directory.parent.mkdir(parents=True, exist_ok=True)
    return keras.callbacks.BackupAndRestore(
        backup_dir=str(plan.directory), save_freq="epoch", delete_checkpoint=plan.delete_when_done
    )


def tensorboard_directory(suite: str, run_label: str) -> Path:
    """Returns ``<run dir>/tensorboard/<suite>/<run label>``."""
    return run_directory() / TENSORBOARD_DIR / safe_label(suite) / safe_label(run_label)


def tensorboard_available() -> str | None:
    """Says why TensorBoard logs cannot be written here, or None when they can.

    Keras writes them with ``tf.summary``, whose implementation ships in the ``tensorboard`` package: it needs
    TensorFlow installed (whatever the Keras backend) and ``tensorboard``, which ``tensorflow-cpu`` 2.21 no
    longer pulls in.
    """
    if importlib.util.find_spec("tensorflow") is None:
        return "TensorFlow is not installed"
    if importlib.util.find_spec("tensorboard") is None:
        return "the tensorboard package is not installed (pip install tensorboard)"
    return None


def tensorboard_callback(log_dir: Path) -> Any:
    """Returns a ``keras.callbacks.TensorBoard`` that writes epoch-level scalars (train and validation).

    The graph, histograms and the profiler are off: they cost time inside the measured fit and the reports
    read only the scalars.

    Returns:
        The callback, or None (after a warning line) when ``tensorboard_available`` says logs cannot be written:
        a missing logger must not cost the run.
    """
    missing = tensorboard_available()
    if missing:
        warn(f"no TensorBoard logs: {missing}; set tensorboard=false to silence this")
        return None
    import keras  # lazy: suites import this module, and --check must not load Keras

    log_dir.mkdir(parents=True, exist_ok=True)
    return keras.callbacks.TensorBoard(
        log_dir=str(log_dir), histogram_freq=0, write_graph=False, update_freq="epoch", profile_batch=0
    )
