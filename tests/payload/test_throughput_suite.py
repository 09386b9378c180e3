"""The throughput suite: a grid of combinations, timed repeats with warm-up excluded, failures that do not end it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keras_bench import cli
from keras_bench.recorder import RunRecorder
from keras_bench.suites import throughput
from keras_bench.timing.rows import record_training
from keras_bench.timing.steps import StepTimer
from keras_bench.timing.throughput import summarize_repeats

# Its module-scoped payload runs are shared by its tests: one worker (make test's --dist loadgroup) runs them once.
pytestmark = pytest.mark.xdist_group("throughput_suite")

THROUGHPUT_TIMEOUT_S = 240
RECIPE_KEYS = {
    "model",
    "batch_size",
    "precision",
    "xla",
    "gpus",
    "data",
    "steps",
    "warmup_steps",
    "repeat",
    "backend",
    "image_size",
}


def _run(
    directory: Path,
    env: dict[str, str],
    argv: Callable[[Path, Path], list[str]],
    params: dict[str, object],
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    suite = directory / "suite.json"
    suite.write_text(json.dumps({"schema_version": 1, "suite": "throughput", "run_id": "r-tp", "params": params}))
    out = directory / "results.json"
    process = subprocess.run(
        argv(suite, out), env=env, cwd=directory, capture_output=True, text=True, timeout=THROUGHPUT_TIMEOUT_S
    )
    return process, json.loads(out.read_text(encoding="utf-8"))


def _rows(document: dict[str, Any], benchmark: str, metric: str) -> list[dict[str, Any]]:
    return [s for s in document["samples"] if s["benchmark"] == benchmark and s["metric"] == metric]


@pytest.fixture(scope="module")
def grid_run(
    tmp_path_factory: pytest.TempPathFactory,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    # Two values on the precision and XLA axes, one batch size: every combination is built, compiled and traced
    # (most of the run's time), and two axes of two values already make a grid of four.
    params = {
        "models": ["small_cnn"],
        "batch_sizes": [4],
        "precisions": ["float32", "mixed_float16"],
        "xla": [False, True],
        "image_size": 16,
        "num_classes": 5,
        "warmup_steps": 2,
        "steps": 3,
        "repeats": 2,
    }
    return _run(tmp_path_factory.mktemp("throughput"), payload_env, payload_argv, params)


@pytest.mark.slow
def test_throughput_grid_writes_a_valid_document_with_one_row_per_combination(
    grid_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]], schema_validator: Any
) -> None:
    process, document = grid_run
    assert process.returncode == 0, process.stderr
    assert [e.message for e in schema_validator.iter_errors(document)] == []
    assert document["errors"] == []
    rows = _rows(document, "train_throughput", "images_per_sec")
    combinations = {(r["metadata"]["batch_size"], r["metadata"]["precision"], r["metadata"]["xla"]) for r in rows}
    assert len(rows) == 4
    assert combinations == {(4, p, x) for p in ("float32", "mixed_float16") for x in (False, True)}
    for row in rows:
        assert set(row["metadata"]) >= RECIPE_KEYS
        assert row["value"] > 0
        assert row["metadata"]["data"] == "synthetic" and row["metadata"]["repeat"] == 2
    assert len(_rows(document, "inference_throughput", "images_per_sec")) == 4


@pytest.mark.slow
def test_throughput_step_times_cover_the_timed_steps_of_every_repeat_and_no_warmup(
    grid_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    _, document = grid_run
    for p50 in _rows(document, "train_throughput", "step_time_ms_p50"):
        assert p50["metadata"]["timed_steps"] == 3 * 2  # steps x repeats; the 2 warm-up steps per repeat are out
        # steps_per_execution 10 is capped at the 3 timed steps: one chunk per repeat, the warm-up rounded up to it.
        assert p50["metadata"]["steps_per_execution"] == 3 and p50["metadata"]["warmup_steps"] == 3
        assert p50["metadata"]["timed_spans"] == 2
    p50_by_recipe = {
        json.dumps(r["metadata"], sort_keys=True): r["value"]
        for r in _rows(document, "train_throughput", "step_time_ms_p50")
    }
    for p90 in _rows(document, "train_throughput", "step_time_ms_p90"):
        assert 0 < p50_by_recipe[json.dumps(p90["metadata"], sort_keys=True)] <= p90["value"]
    assert len(_rows(document, "train_throughput", "step_time_ms_stdev")) == 4


def test_repeats_are_split_by_epoch_and_each_drops_its_own_warmup_steps() -> None:
    ticks = iter(float(t) for t in range(1000))
    timer = StepTimer(clock=lambda: next(ticks))
    for durations in ([50, 1, 1, 1], [40, 2, 2, 2]):  # one slow first step per epoch
        timer.epoch_begin()
        for duration in durations:
            timer.batch_begin()
            for _ in range(duration - 1):
                next(ticks)
            timer.batch_end(images=10)

    timing = summarize_repeats(timer.steps, warmup_steps=1, batch_size=10)

    assert [r.timed_steps for r in timing.repeats] == [3, 3]
    assert [r.images_per_sec for r in timing.repeats] == [10.0, 5.0]
    assert timing.step_ms == (1000.0,) * 3 + (2000.0,) * 3
    recorder = RunRecorder()
    record_training(recorder, timing, {"gpus": 2, "model": "m"})
    per_gpu = [s for s in recorder.samples if s.benchmark == "train_throughput_per_gpu"]
    assert [s.value for s in per_gpu] == [7.5 / 2]


def test_a_failed_combination_is_recorded_and_the_grid_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_suite: Callable[..., Path]
) -> None:
    measured = []

    def measure(combination: Any, p: Any, split: Any, facts: Any, recorder: RunRecorder) -> None:
        if combination.batch_size == 64:
            raise RuntimeError("OOM when allocating tensor with shape[64,112,112,32]")
        measured.append(combination.batch_size)
        recorder.add("train_throughput", "images_per_sec", 10.0, "images/s", {"batch_size": combination.batch_size})

    monkeypatch.setattr(throughput, "_measure", measure)
    suite = write_suite(
        {
            "models": ["small_cnn"],
            "batch_sizes": [32, 64, 128],
            "precisions": ["float32"],
            "xla": [False],
            "image_size": 8,
        },
        suite="throughput",
    )
    out = tmp_path / "results.json"

    assert cli.main(["--suite", str(suite), "--out", str(out)]) == 0

    document = json.loads(out.read_text(encoding="utf-8"))
    assert measured == [32, 128]
    assert [s["metadata"]["batch_size"] for s in document["samples"]] == [32, 128]
    assert len(document["errors"]) == 1
    error = document["errors"][0]
    assert error["stage"] == "throughput model=small_cnn batch_size=64 precision=float32 xla=false"
    assert error["type"] == "RuntimeError" and "OOM" in error["message"]


def test_every_combination_failing_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_suite: Callable[..., Path]
) -> None:
    def measure(*args: Any) -> None:
        raise RuntimeError("no such device")

    monkeypatch.setattr(throughput, "_measure", measure)
    suite = write_suite(
        {"models": ["small_cnn"], "batch_sizes": [8], "precisions": ["float32"], "xla": [False], "image_size": 8},
        suite="throughput",
    )
    out = tmp_path / "results.json"

    assert cli.main(["--suite", str(suite), "--out", str(out)]) == 1

    errors = json.loads(out.read_text(encoding="utf-8"))["errors"]
    assert [e["type"] for e in errors] == ["RuntimeError", "RuntimeError"]
    assert "all 1 throughput combinations failed" in errors[-1]["message"]


def test_unknown_model_in_the_grid_is_rejected_before_anything_is_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_suite: Callable[..., Path]
) -> None:
    def measure(*args: Any) -> None:
        raise AssertionError("nothing may be measured")

    monkeypatch.setattr(throughput, "_measure", measure)
    suite = write_suite({"models": ["small_cnn", "resnet5000"]}, suite="throughput")
    out = tmp_path / "results.json"

    assert cli.main(["--suite", str(suite), "--out", str(out)]) == 2

    errors = json.loads(out.read_text(encoding="utf-8"))["errors"]
    assert errors[0]["stage"] == "params" and "'resnet5000'" in errors[0]["message"]


@pytest.mark.slow
def test_throughput_runs_on_jax_from_host_arrays(
    tmp_path: Path,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
    schema_validator: Any,
) -> None:
    pytest.importorskip("jax")
    params = {
        "models": ["small_cnn"],
        "batch_sizes": [8],
        "precisions": ["float32", "mixed_bfloat16"],
        "xla": [True],
        "image_size": 8,
        "data": "digits",
        "warmup_steps": 1,
        "steps": 3,
        "repeats": 2,
    }
    process, document = _run(tmp_path, {**payload_env, "KERAS_BACKEND": "jax"}, payload_argv, params)

    assert process.returncode == 0, process.stderr
    assert [e.message for e in schema_validator.iter_errors(document)] == []
    rows = _rows(document, "train_throughput", "images_per_sec")
    assert [r["metadata"]["precision"] for r in rows] == ["float32", "mixed_bfloat16"]
    assert all(r["metadata"]["backend"] == "jax" and r["metadata"]["num_classes"] == 10 for r in rows)
    assert document["software"]["backend"] == "jax"


def test_throughput_yaml_params_equal_the_payload_defaults(benchmarks_dir: Path) -> None:
    yaml = pytest.importorskip("yaml")
    declared = yaml.safe_load((benchmarks_dir / "suites" / "throughput.yaml").read_text(encoding="utf-8"))
    assert declared["name"] == "throughput"
    assert declared["params"] == {spec.name: spec.default for spec in throughput.THROUGHPUT.params}
