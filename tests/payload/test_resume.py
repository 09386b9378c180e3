"""A payload killed mid-training and started again resumes at its last completed epoch, not from zero.

Also the pieces that make that work, without Keras: backup naming, the saved curve, the per-epoch curve.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keras_bench.timing.steps import StepTimer
from keras_bench.training.checkpoint import (
    CHECKPOINTS_DIR,
    WORKDIR_ENV,
    EpochPoint,
    load_curve,
    plan_backup,
    recipe_hash,
    save_curve,
)

PAYLOAD_TIMEOUT_S = 180
EPOCHS = 8  # above checkpoint_above_epochs (3), so every epoch is backed up; 6 epochs left after the kill
EPOCH_LINE = re.compile(r"^\[keras_bench\] epoch (\d+)/(\d+) ")


def _epochs_logged(stdout: str) -> list[int]:
    return [int(match.group(1)) for match in map(EPOCH_LINE.match, stdout.splitlines()) if match]


@pytest.mark.slow
def test_payload_killed_mid_training_resumes_after_its_last_completed_epoch(
    tmp_path: Path,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
    schema_validator: Any,
) -> None:
    # An unreachable target makes the run train its whole budget; the run directory is the working directory.
    suite = tmp_path / "suite.json"
    params = {"target_accuracy": 1.01, "max_epochs": EPOCHS, "tensorboard": False}
    suite.write_text(json.dumps({"schema_version": 1, "suite": "accuracy", "run_id": "r-resume", "params": params}))
    out = tmp_path / "results.json"
    env = {key: value for key, value in payload_env.items() if key != WORKDIR_ENV}

    first = subprocess.Popen(
        payload_argv(suite, out), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    killed_after: list[int] = []
    try:
        assert first.stdout is not None
        for line in first.stdout:
            match = EPOCH_LINE.match(line)
            if match and int(match.group(1)) >= 2:
                first.send_signal(signal.SIGKILL)
                killed_after.append(int(match.group(1)))
                break
        first.wait(timeout=PAYLOAD_TIMEOUT_S)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert killed_after, "the first run never logged epoch 2"
    assert first.returncode == -signal.SIGKILL
    assert not out.exists()
    backups = list((tmp_path / CHECKPOINTS_DIR).iterdir())
    assert len(backups) == 1
    saved = json.loads((backups[0] / "training_metadata.json").read_text())["epoch"]
    assert killed_after[0] <= saved < EPOCHS

    second = subprocess.run(
        payload_argv(suite, out), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=PAYLOAD_TIMEOUT_S
    )
    assert second.returncode == 0, second.stderr
    logged = _epochs_logged(second.stdout)
    assert logged[0] == saved + 1 > 1
    assert logged == list(range(saved + 1, EPOCHS + 1))
    assert f"resuming after epoch {saved} of {EPOCHS}" in second.stdout

    document = json.loads(out.read_text())
    assert list(schema_validator.iter_errors(document)) == []
    train = {s["metric"]: s for s in document["samples"] if s["benchmark"] == "train"}
    assert train["epochs"]["value"] == EPOCHS
    assert train["epochs"]["metadata"]["resumed_from_epoch"] == saved
    assert train["epochs"]["metadata"]["target_reached"] is False
    assert "time_to_accuracy_s" not in train
    curve = [s for s in document["samples"] if (s["benchmark"], s["metric"]) == ("train_curve", "accuracy")]
    assert [s["metadata"]["epoch"] for s in curve] == list(range(1, EPOCHS + 1))
    assert [s["metadata"]["restored"] for s in curve] == [epoch <= saved for epoch in range(1, EPOCHS + 1)]
    elapsed = [s["metadata"]["elapsed_s"] for s in curve]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    assert train["seconds"]["value"] == pytest.approx(elapsed[-1])
    # A completed fit deletes its backup.
    assert list((tmp_path / CHECKPOINTS_DIR).iterdir()) == []


def _point(epoch: int, accuracy: float = 0.5) -> EpochPoint:
    return EpochPoint(epoch, accuracy, 1.0, accuracy, 1.0, 2.0, 2.0 * epoch, 3.0 * epoch)


def test_backup_directory_is_named_by_suite_and_recipe_under_the_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WORKDIR_ENV, str(tmp_path))
    plan = plan_backup("accuracy", {"max_epochs": 30, "seed": 0})
    assert plan.directory == tmp_path / CHECKPOINTS_DIR / f"accuracy-{recipe_hash({'seed': 0, 'max_epochs': 30})}"
    assert plan_backup("accuracy", {"max_epochs": 31, "seed": 0}).directory != plan.directory
    assert plan_backup("transfer", {"seed": 0}, "fine tune").directory.name.endswith("-fine_tune")
    assert (plan.resumed_from_epoch, plan.restored_curve) == (0, ())


def test_workdir_defaults_to_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORKDIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert plan_backup("hparams", {}).directory.parent == tmp_path / CHECKPOINTS_DIR


def test_a_backup_restores_the_curve_up_to_the_epoch_its_weights_cover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WORKDIR_ENV, str(tmp_path))
    directory = plan_backup("accuracy", {"seed": 1}).directory
    # Killed after the curve of epoch 3 was written but before the weights backup of epoch 3.
    save_curve(directory, [_point(1), _point(2), _point(3)])
    (directory / "training_metadata.json").write_text(json.dumps({"epoch": 2, "batch": 0}))
    plan = plan_backup("accuracy", {"seed": 1})
    assert plan.resumed_from_epoch == 2
    assert [point.epoch for point in plan.restored_curve] == [1, 2]
    assert load_curve(directory, 3)[-1] == _point(3)


def test_an_unreadable_backup_means_starting_from_epoch_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKDIR_ENV, str(tmp_path))
    directory = plan_backup("accuracy", {"seed": 2}).directory
    directory.mkdir(parents=True)
    (directory / "training_metadata.json").write_text("{not json")
    assert plan_backup("accuracy", {"seed": 2}).resumed_from_epoch == 0


class _FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_epoch_curve_counts_training_steps_only_and_continues_a_restored_curve() -> None:
    from keras_bench.training.fit import EpochCurve

    clock = _FakeClock()
    timer = StepTimer(clock)
    saved: list[list[EpochPoint]] = []
    curve = EpochCurve(timer, 5, [_point(1), _point(2)], 0.9, on_point=lambda p: saved.append(list(p)), clock=clock)
    curve.fit_begin()
    curve.epoch_begin()
    timer.epoch_begin()
    for _ in range(2):  # two steps of 0.5 s each
        timer.batch_begin()
        clock.now += 0.5
        timer.batch_end(32)
    clock.now += 4.0  # held-out evaluation: not training time
    assert curve.epoch_end(2, {"val_accuracy": 0.8, "val_loss": 0.7, "accuracy": 0.75, "loss": 0.9}) is False
    point = curve.points[-1]
    assert (point.epoch, point.accuracy, point.train_s) == (3, 0.8, 1.0)
    assert point.elapsed_train_s == 4.0 + 1.0  # the restored epochs' 2 x 2.0 s plus this one
    assert point.elapsed_wall_s == 6.0 + 5.0
    assert saved[-1][-1] == point and len(saved[-1]) == 3
    curve.epoch_begin()
    assert curve.epoch_end(3, {"val_accuracy": 0.95, "val_loss": float("nan")}) is True
    assert curve.points[-1].loss is None  # a NaN loss is not a measurement
