"""The accuracy suite end to end: train digits to a target accuracy, the curve, TensorBoard logs, no target."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keras_bench.errors import ParamError
from keras_bench.params import resolve_params
from keras_bench.suites import SUITES
from keras_bench.training.checkpoint import (
    CHECKPOINTS_DIR,
    TENSORBOARD_DIR,
    WORKDIR_ENV,
    tensorboard_available,
    tensorboard_callback,
)

# Its module-scoped payload runs are shared by its tests: one worker (make test's --dist loadgroup) runs them once.
pytestmark = pytest.mark.xdist_group("accuracy_suite")

PAYLOAD_TIMEOUT_S = 180


class AccuracyRun:
    """One finished accuracy run: its process, document and run directory."""

    def __init__(self, process: subprocess.CompletedProcess[str], out: Path, workdir: Path) -> None:
        self.process = process
        self.workdir = workdir
        self.document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))

    def samples(self, benchmark: str, metric: str) -> list[dict[str, Any]]:
        return [s for s in self.document["samples"] if (s["benchmark"], s["metric"]) == (benchmark, metric)]

    def one(self, benchmark: str, metric: str) -> dict[str, Any]:
        matches = self.samples(benchmark, metric)
        assert len(matches) == 1, f"expected one {benchmark}/{metric} sample, found {len(matches)}"
        return matches[0]


def _run_accuracy(
    directory: Path,
    params: dict[str, object],
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> AccuracyRun:
    suite = directory / "suite.json"
    suite.write_text(json.dumps({"schema_version": 1, "suite": "accuracy", "run_id": "r-acc", "params": params}))
    out = directory / "results.json"
    workdir = directory / "run"
    workdir.mkdir()
    process = subprocess.run(
        payload_argv(suite, out),
        env={**payload_env, WORKDIR_ENV: str(workdir)},
        capture_output=True,
        text=True,
        timeout=PAYLOAD_TIMEOUT_S,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    return AccuracyRun(process, out, workdir)


@pytest.fixture(scope="module")
def digits_run(
    tmp_path_factory: pytest.TempPathFactory,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> AccuracyRun:
    # Empty params: the defaults (small CNN, digits, target 0.95 within 30 epochs, dropout "auto").
    return _run_accuracy(tmp_path_factory.mktemp("accuracy"), {}, payload_env, payload_argv)


@pytest.fixture(scope="module")
def unreachable_run(
    tmp_path_factory: pytest.TempPathFactory,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> AccuracyRun:
    params = {"target_accuracy": 1.01, "max_epochs": 2, "tensorboard": False}
    return _run_accuracy(tmp_path_factory.mktemp("unreachable"), params, payload_env, payload_argv)


@pytest.mark.slow
def test_accuracy_document_validates_against_the_schema(digits_run: AccuracyRun, schema_validator: Any) -> None:
    assert list(schema_validator.iter_errors(digits_run.document)) == []
    assert digits_run.document["errors"] == []
    assert digits_run.document["suite"] == "accuracy"


@pytest.mark.slow
def test_digits_cnn_reaches_95_percent_and_stops_at_the_first_epoch_that_does(digits_run: AccuracyRun) -> None:
    accuracy = digits_run.one("train", "accuracy")
    assert accuracy["value"] >= 0.95
    epochs = digits_run.one("train", "epochs")["value"]
    assert digits_run.one("train", "epochs_to_accuracy")["value"] == epochs < 30
    curve = [s["value"] for s in digits_run.samples("train_curve", "accuracy")]
    assert all(value < 0.95 for value in curve[:-1]) and curve[-1] == accuracy["value"]
    assert f"reached at epoch {int(epochs)}" in digits_run.process.stdout


@pytest.mark.slow
def test_time_to_accuracy_is_the_training_time_up_to_the_epoch_that_reached_it(digits_run: AccuracyRun) -> None:
    reached = digits_run.one("train", "time_to_accuracy_s")
    curve = digits_run.samples("train_curve", "accuracy")
    assert reached["value"] == pytest.approx(curve[-1]["metadata"]["elapsed_s"]) and reached["value"] > 0
    # Evaluation after every epoch is outside time to accuracy but inside wall_s.
    assert reached["metadata"]["wall_s"] > reached["value"]
    assert reached["metadata"]["target_accuracy"] == 0.95
    assert reached["metadata"]["target_reached"] is True
    assert reached["metadata"]["resumed_from_epoch"] == 0


@pytest.mark.slow
def test_curve_has_one_accuracy_and_loss_sample_per_epoch_against_time(digits_run: AccuracyRun) -> None:
    epochs = int(digits_run.one("train", "epochs")["value"])
    for metric in ("accuracy", "loss"):
        curve = digits_run.samples("train_curve", metric)
        assert [s["metadata"]["epoch"] for s in curve] == list(range(1, epochs + 1))
        assert {s["metadata"]["split"] for s in curve} == {"test"}
        elapsed = [s["metadata"]["elapsed_s"] for s in curve]
        assert elapsed == sorted(set(elapsed))


@pytest.mark.slow
def test_samples_carry_the_recipe_with_the_auto_dropout(digits_run: AccuracyRun) -> None:
    metadata = digits_run.one("train", "accuracy")["metadata"]
    assert metadata["model"] == "small_cnn" and metadata["data"] == "digits"
    assert (metadata["optimizer"], metadata["learning_rate"], metadata["batch_size"]) == ("adam", 0.001, 32)
    assert (metadata["dropout"], metadata["dropout_rule"]) == (0.38, "auto")  # 1,438 training images
    assert metadata["checkpointed"] is True


@pytest.mark.slow
def test_tensorboard_logs_land_in_the_run_directory_and_the_finished_backup_is_gone(digits_run: AccuracyRun) -> None:
    assert list((digits_run.workdir / CHECKPOINTS_DIR).iterdir()) == []
    missing = tensorboard_available()
    if missing is not None:  # e.g. a venv without the tensorboard package: the run goes on without logs
        assert f"no TensorBoard logs: {missing}" in digits_run.process.stderr
        assert not (digits_run.workdir / TENSORBOARD_DIR).exists()
        return
    runs = list((digits_run.workdir / TENSORBOARD_DIR / "accuracy").iterdir())
    assert [run.name for run in runs] == ["small_cnn-digits-adam-lr0.001-dropout0.38-seed0"]
    for split in ("train", "validation"):
        assert list((runs[0] / split).glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_unreached_target_is_recorded_without_time_to_accuracy(unreachable_run: AccuracyRun) -> None:
    assert unreachable_run.document["errors"] == []
    assert unreachable_run.samples("train", "time_to_accuracy_s") == []
    assert unreachable_run.samples("train", "epochs_to_accuracy") == []
    epochs = unreachable_run.one("train", "epochs")
    assert epochs["value"] == 2
    assert epochs["metadata"]["target_reached"] is False
    assert "target accuracy 1.01 not reached in 2 epochs (best 0." in unreachable_run.process.stdout


@pytest.mark.slow
def test_short_runs_are_not_backed_up_and_tensorboard_can_be_turned_off(unreachable_run: AccuracyRun) -> None:
    assert unreachable_run.one("train", "epochs")["metadata"]["checkpointed"] is False  # 2 epochs <= 3
    assert not (unreachable_run.workdir / TENSORBOARD_DIR).exists()
    assert not (unreachable_run.workdir / CHECKPOINTS_DIR).exists()


def test_missing_tensorboard_package_warns_and_trains_without_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a)
    )
    assert tensorboard_callback(tmp_path / "logs") is None
    assert "no TensorBoard logs: the tensorboard package is not installed" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_dropout_above_one_is_rejected_naming_auto() -> None:
    with pytest.raises(ParamError, match=r"^param 'dropout': expected \"auto\" or a number in \[0, 1\), received 1.5"):
        resolve_params(SUITES["accuracy"].params, {"dropout": 1.5})


def test_accuracy_yaml_params_equal_the_payload_defaults(benchmarks_dir: Path) -> None:
    yaml = pytest.importorskip("yaml")
    declared = yaml.safe_load((benchmarks_dir / "suites" / "accuracy.yaml").read_text(encoding="utf-8"))
    assert declared["name"] == "accuracy"
    assert declared["params"] == {spec.name: spec.default for spec in SUITES["accuracy"].params}
