"""The smoke suite end to end, as the orchestrator runs it: a subprocess that writes a results document."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Its module-scoped payload runs are shared by its tests: one worker (make test's --dist loadgroup) runs them once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("payload_smoke_run")]

SMOKE_TIMEOUT_S = 180


class SmokeRun:
    """One finished smoke run: the process and the document it wrote."""

    def __init__(self, process: subprocess.CompletedProcess[str], out: Path) -> None:
        self.process = process
        self.out = out
        self.document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))

    def value(self, benchmark: str, metric: str) -> float:
        matches = [
            s["value"] for s in self.document["samples"] if s["benchmark"] == benchmark and s["metric"] == metric
        ]
        assert len(matches) == 1, f"expected one {benchmark}/{metric} sample, found {len(matches)}"
        return float(matches[0])


@pytest.fixture(scope="module")
def smoke_run(
    tmp_path_factory: pytest.TempPathFactory,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> SmokeRun:
    # Empty params: the payload must fill every default itself.
    directory = tmp_path_factory.mktemp("smoke")
    suite = directory / "suite.json"
    suite.write_text(json.dumps({"schema_version": 1, "suite": "smoke", "run_id": "r-smoke", "params": {}}))
    out = directory / "results" / "results.json"
    process = subprocess.run(
        payload_argv(suite, out),
        env=payload_env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    return SmokeRun(process, out)


def test_smoke_writes_a_document_that_validates_against_the_schema(smoke_run: SmokeRun, schema_validator: Any) -> None:
    problems = [error.message for error in schema_validator.iter_errors(smoke_run.document)]
    assert problems == []
    assert smoke_run.document["run_id"] == "r-smoke"
    assert smoke_run.document["suite"] == "smoke"
    assert smoke_run.document["errors"] == []


def test_smoke_reaches_95_percent_test_accuracy_with_defaults(smoke_run: SmokeRun) -> None:
    assert smoke_run.value("train", "accuracy") >= 0.95


def test_smoke_reports_positive_train_and_inference_throughput(smoke_run: SmokeRun) -> None:
    assert smoke_run.value("train_throughput", "images_per_sec") > 0
    assert smoke_run.value("inference_throughput", "images_per_sec") > 0
    assert (
        0
        < smoke_run.value("train_throughput", "step_time_ms_p50")
        <= smoke_run.value("train_throughput", "step_time_ms_p90")
    )


def test_smoke_train_throughput_excludes_warmup_steps(smoke_run: SmokeRun) -> None:
    rows = [s for s in smoke_run.document["samples"] if s["benchmark"] == "train_throughput"]
    throughput = next(s for s in rows if s["metric"] == "images_per_sec")
    steps_per_epoch = -(-1438 // 32)  # 1438 training images: the 80/20 split of 1797 rounded per class
    assert throughput["metadata"]["warmup_steps"] == 5  # one chunk of steps_per_execution 5, first epoch only
    assert throughput["metadata"]["steps"] == steps_per_epoch  # per repeat (epoch): the most any epoch timed
    assert throughput["metadata"]["steps_per_execution"] == 5
    # Every epoch is a repeat: the figure is the median epoch, with the epochs' spread beside it.
    repeats = [s["value"] for s in rows if s["metric"] == "images_per_sec_repeat"]
    assert len(repeats) == throughput["metadata"]["repeats_timed"] == 10
    assert throughput["value"] == pytest.approx(sorted(repeats)[4:6][0] / 2 + sorted(repeats)[4:6][1] / 2)
    by_metric = {s["metric"]: s["value"] for s in rows}
    assert by_metric["images_per_sec_min"] == min(repeats) and by_metric["images_per_sec_max"] == max(repeats)
    assert 0 <= by_metric["images_per_sec_cv"] < 1
    # Step times are chunk times over 5 steps: 8 full chunks in each epoch (the 9th holds the short batch),
    # less the first epoch's warm-up chunk.
    p50 = next(s for s in rows if s["metric"] == "step_time_ms_p50")
    assert p50["metadata"]["timed_spans"] == 10 * 8 - 1 and p50["metadata"]["timed_steps"] == 5 * (10 * 8 - 1)


def test_smoke_timings_separate_compute_from_total(smoke_run: SmokeRun) -> None:
    timings = smoke_run.document["timings"]
    assert timings["import_s"] > 0
    assert timings["data_s"] > 0
    assert 0 < timings["compute_s"] < timings["total_s"]
    assert timings["import_s"] + timings["data_s"] + timings["compute_s"] <= timings["total_s"]
    assert timings["started_at"] <= timings["finished_at"]


def test_smoke_records_effective_params_and_software(smoke_run: SmokeRun) -> None:
    document = smoke_run.document
    assert document["params"]["epochs"] == 10
    assert document["params"]["model"] == "small_cnn"
    assert document["software"]["backend"] == "tensorflow"
    assert document["software"]["keras"].startswith("3.")
    assert document["host"]["cpu_count"] >= 1


def test_smoke_streams_one_progress_line_per_epoch(smoke_run: SmokeRun) -> None:
    lines = smoke_run.process.stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("[keras_bench] epoch ")]
    assert len(epoch_lines) == 10
    assert epoch_lines[-1].startswith("[keras_bench] epoch 10/10 loss=")


def test_smoke_leaves_no_temporary_file_next_to_the_results(smoke_run: SmokeRun) -> None:
    assert sorted(p.name for p in smoke_run.out.parent.iterdir()) == ["results.json"]


def test_smoke_yaml_params_equal_the_payload_defaults(benchmarks_dir: Path) -> None:
    yaml = pytest.importorskip("yaml")
    from keras_bench.suites import SUITES

    declared = yaml.safe_load((benchmarks_dir / "suites" / "smoke.yaml").read_text(encoding="utf-8"))
    assert declared["name"] == "smoke"
    assert declared["params"] == {spec.name: spec.default for spec in SUITES["smoke"].params}


def test_sigterm_mid_training_still_writes_the_document(
    write_suite: Callable[..., Path],
    tmp_path: Path,
    schema_validator: Any,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> None:
    suite = write_suite({"epochs": 500})
    out = tmp_path / "results.json"
    process = subprocess.Popen(
        payload_argv(suite, out),
        env=payload_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("[keras_bench] epoch 1/500"):
                process.terminate()
                break
        _, stderr = process.communicate(timeout=SMOKE_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr
    document = json.loads(out.read_text(encoding="utf-8"))
    assert list(schema_validator.iter_errors(document)) == []
    assert document["errors"] == [{"stage": "train", "type": "TerminatedError", "message": "received SIGTERM"}]
    assert document["timings"]["import_s"] > 0


def test_smoke_runs_on_jax_on_a_machine_without_a_gpu(
    tmp_path: Path, payload_env: dict[str, str], payload_argv: Callable[[Path, Path], list[str]]
) -> None:
    """keras.distribution.list_devices("gpu") raises on JAX without a GPU; the suite must count GPUs without it."""
    pytest.importorskip("jax")
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"schema_version": 1, "suite": "smoke", "run_id": "r-jax", "params": {"epochs": 1}}))
    out = tmp_path / "results.json"
    process = subprocess.run(payload_argv(suite, out), env={**payload_env, "KERAS_BACKEND": "jax"},
                             capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, check=False)
    assert process.returncode == 0, process.stderr
    document = json.loads(out.read_text())
    assert document["software"]["backend"] == "jax" and document["errors"] == []
    assert any(s["benchmark"] == "train" and s["metric"] == "accuracy" for s in document["samples"])
