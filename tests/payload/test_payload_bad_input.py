"""Bad suite documents and params: exit code 2, one line naming the field, and still a results document."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keras_bench.cli import main

RunPayload = Callable[[Path, Path], subprocess.CompletedProcess[str]]


def test_unknown_param_exits_2_with_one_line_and_an_error_document(
    write_suite: Callable[..., Path], run_payload: RunPayload, tmp_path: Path, schema_validator: Any
) -> None:
    out = tmp_path / "results.json"
    process = run_payload(write_suite({"epochs": 3, "epoch_count": 7}), out)

    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "keras_bench: error: param 'epoch_count': unknown parameter, received 7; accepted parameters: "
        "batch_size, dropout, epochs, inference_repeats, learning_rate, model, seed, steps_per_execution, warmup_steps"
    ]
    document = json.loads(out.read_text(encoding="utf-8"))
    assert list(schema_validator.iter_errors(document)) == []
    assert document["run_id"] == "r-test"
    assert document["samples"] == []
    assert [(e["stage"], e["type"]) for e in document["errors"]] == [("params", "ParamError")]


def test_bad_value_exits_2_naming_field_value_and_what_is_accepted(
    write_suite: Callable[..., Path], run_payload: RunPayload, tmp_path: Path
) -> None:
    out = tmp_path / "results.json"
    process = run_payload(write_suite({"epochs": -1}), out)

    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "keras_bench: error: param 'epochs': expected a positive integer (at most 100,000), received -1"
    ]
    assert json.loads(out.read_text(encoding="utf-8"))["errors"][0]["message"] == (
        "param 'epochs': expected a positive integer (at most 100,000), received -1"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "resnet50"}, "param 'model': expected one of small_cnn, received \"resnet50\""),
        ({"batch_size": "32"}, "param 'batch_size': expected a positive integer (at most 65,536), received \"32\""),
        ({"batch_size": 32.0}, "param 'batch_size': expected a positive integer (at most 65,536), received 32.0"),
        ({"epochs": 10**24},
         "param 'epochs': expected a positive integer (at most 100,000), received 1000000000000000000000000"),
        ({"seed": True}, "param 'seed': expected a non-negative integer (at most 4,294,967,295), received true"),
        ({"dropout": 1.0}, "param 'dropout': expected a number in [0, 1), received 1.0"),
        ({"learning_rate": 0}, "param 'learning_rate': expected a number greater than 0, received 0"),
    ],
)
def test_rejected_params_exit_2_with_the_message_in_the_document(
    params: dict[str, object],
    message: str,
    write_suite: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "results.json"
    assert main(["--suite", str(write_suite(params)), "--out", str(out)]) == 2

    assert capsys.readouterr().err.strip() == f"keras_bench: error: {message}"
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["errors"] == [{"stage": "params", "type": "ParamError", "message": message}]
    assert document["params"] == params  # as received, since they were rejected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"suite": "nightly"},
            "suite document field 'suite': expected one of accuracy, deploy, hparams, pipeline, scaling, smoke, "
            "throughput, transfer, received \"nightly\"",
        ),
        ({"schema_version": 2}, "suite document field 'schema_version': expected 1, received 2"),
        ({"run_id": ""}, "suite document field 'run_id': expected a non-empty string, received \"\""),
        ({"params": [1]}, "suite document field 'params': expected an object, received [1]"),
        (
            {"priority": "high"},
            "suite document field 'priority': unknown field, received \"high\"; "
            "accepted fields: schema_version, suite, run_id, params",
        ),
    ],
)
def test_bad_suite_document_exits_2_and_keeps_what_identifies_the_run(
    fields: dict[str, object],
    message: str,
    write_suite: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    schema_validator: Any,
) -> None:
    out = tmp_path / "results.json"
    assert main(["--suite", str(write_suite(**fields)), "--out", str(out)]) == 2

    assert capsys.readouterr().err.strip() == f"keras_bench: error: {message}"
    document = json.loads(out.read_text(encoding="utf-8"))
    assert list(schema_validator.iter_errors(document)) == []
    assert document["errors"] == [{"stage": "suite_document", "type": "SuiteDocumentError", "message": message}]
    assert document["run_id"] == ("unknown" if "run_id" in fields else "r-test")


@pytest.mark.parametrize(("text", "fragment"), [("{not json", "invalid JSON"), ('{"a": NaN}', "NaN")])
def test_unreadable_suite_document_exits_2_with_unknown_run_id(
    text: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "suite.json"
    suite.write_text(text, encoding="utf-8")
    out = tmp_path / "results.json"

    assert main(["--suite", str(suite), "--out", str(out)]) == 2

    assert fragment in capsys.readouterr().err
    document = json.loads(out.read_text(encoding="utf-8"))
    assert (document["run_id"], document["suite"]) == ("unknown", "unknown")
    assert document["errors"][0]["stage"] == "suite_document"


def test_warmup_longer_than_training_is_a_param_error(
    write_suite: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    suite = write_suite({"epochs": 1, "warmup_steps": 45})

    assert main(["--suite", str(suite), "--out", str(out)]) == 2

    assert capsys.readouterr().err.strip() == (
        "keras_bench: error: param 'warmup_steps': expected fewer than the 45 training steps "
        "(1 epochs x 45 steps), received 45"
    )
    assert json.loads(out.read_text(encoding="utf-8"))["errors"][0]["stage"] == "params"
