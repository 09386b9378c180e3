"""A suite that fails part-way: exit code 1, traceback on stderr, earlier samples kept, errors entry added."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from keras_bench.cli import main
from keras_bench.params import ParamValue, positive_int
from keras_bench.recorder import RunRecorder
from keras_bench.results import Sample
from keras_bench.suites import Suite


def _fails_in_evaluate(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    with recorder.phase("train", "compute"):
        recorder.add("train_throughput", "images_per_sec", 512.0, "images/s", {"epochs": params["epochs"]})
    with recorder.phase("evaluate", "compute"):
        raise RuntimeError("evaluation blew up")


def _stopped_mid_training(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    with recorder.phase("train", "compute"):
        recorder.add("train", "epochs", 1, "epochs", {})
        recorder.stop.request("received SIGTERM")  # what the CLI's SIGTERM handler does
    with recorder.phase("evaluate", "compute"):
        raise AssertionError("a phase must not start after a stop request")


def _writes_an_invalid_sample(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    # Bypasses RunRecorder.add's checks, as a buggy suite could, to exercise the last line of defence.
    recorder.samples.append(Sample("train", "frames_per_sec", 1.0, "frames/s", {}))


def _registry(run: Callable[[Mapping[str, ParamValue], RunRecorder], None]) -> dict[str, Suite]:
    return {"smoke": Suite("smoke", "test double", (positive_int("epochs", 2),), run)}


def test_failure_mid_suite_exits_1_and_keeps_samples_measured_before_it(
    write_suite: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    schema_validator: Any,
) -> None:
    out = tmp_path / "results.json"

    code = main(["--suite", str(write_suite({"epochs": 3})), "--out", str(out)], suites=_registry(_fails_in_evaluate))

    assert code == 1
    stderr = capsys.readouterr().err
    assert "Traceback (most recent call last)" in stderr
    assert "RuntimeError: evaluation blew up" in stderr
    document = json.loads(out.read_text(encoding="utf-8"))
    assert list(schema_validator.iter_errors(document)) == []
    assert [(s["benchmark"], s["metric"], s["value"]) for s in document["samples"]] == [
        ("train_throughput", "images_per_sec", 512.0)
    ]
    assert document["errors"] == [{"stage": "evaluate", "type": "RuntimeError", "message": "evaluation blew up"}]
    assert document["params"] == {"epochs": 3}


def test_stop_request_ends_the_run_at_the_next_phase_boundary(write_suite: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "results.json"

    code = main(["--suite", str(write_suite()), "--out", str(out)], suites=_registry(_stopped_mid_training))

    assert code == 1
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["errors"] == [{"stage": "train", "type": "TerminatedError", "message": "received SIGTERM"}]
    assert [s["metric"] for s in document["samples"]] == ["epochs"]


def test_document_failing_its_own_schema_exits_1_with_a_validate_error(
    write_suite: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"

    code = main(["--suite", str(write_suite()), "--out", str(out)], suites=_registry(_writes_an_invalid_sample))

    assert code == 1
    assert "results document fails its schema" in capsys.readouterr().err
    errors = json.loads(out.read_text(encoding="utf-8"))["errors"]
    assert [(e["stage"], e["type"]) for e in errors] == [("validate", "ValidationError")]
    assert "frames_per_sec" in errors[0]["message"]


def test_results_land_atomically_replacing_an_older_document(write_suite: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    out.write_text("stale", encoding="utf-8")

    main(["--suite", str(write_suite({"epochs": 1})), "--out", str(out)], suites=_registry(_fails_in_evaluate))

    assert json.loads(out.read_text(encoding="utf-8"))["run_id"] == "r-test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "suite.json"]


def test_recorder_rejects_a_metric_outside_the_closed_list() -> None:
    with pytest.raises(ValueError, match="metric='fps'"):
        RunRecorder().add("train_throughput", "fps", 1.0, "images/s", {})


def test_recorder_skips_a_nan_value_instead_of_writing_it(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = RunRecorder()

    assert recorder.add("train", "loss", float("nan"), "", {}) is None

    assert recorder.samples == []
    assert "train/loss" in capsys.readouterr().err


def test_recorder_names_the_stage_that_failed_and_still_counts_its_time() -> None:
    ticks = iter([0.0, 2.0, 10.0, 13.5])
    recorder = RunRecorder(clock=lambda: next(ticks))

    with recorder.phase("data", "data"):
        pass
    with pytest.raises(KeyError), recorder.phase("build", "compute"):
        raise KeyError("layer")

    assert recorder.failed_stage == "build"
    assert recorder.seconds == {"import": 0.0, "data": 2.0, "compute": 3.5}
