"""The scaling suite under MirroredStrategy: 2 logical CPU devices, as the orchestrator runs it (a subprocess)."""

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

# Its module-scoped payload runs are shared by its tests: one worker (make test's --dist loadgroup) runs them once.
pytestmark = pytest.mark.xdist_group("scaling_suite")

RUN_TIMEOUT_S = 180
TINY = {
    "cpu_devices": 2,
    "replica_counts": [4, 1, 2],  # 4 exceeds the 2 devices: skipped, not an error
    "per_replica_batch": 8,
    "image_size": 16,
    "steps": 4,
    "warmup_steps": 2,
    "repeats": 2,
}


def write_scaling_suite(directory: Path, params: dict[str, object]) -> Path:
    path = directory / "suite.json"
    path.write_text(json.dumps({"schema_version": 1, "suite": "scaling", "run_id": "r-scaling", "params": params}))
    return path


def samples(document: dict[str, Any], benchmark: str, metric: str) -> list[dict[str, Any]]:
    return [s for s in document["samples"] if (s["benchmark"], s["metric"]) == (benchmark, metric)]


@pytest.fixture(scope="module")
def mirrored_run(
    tmp_path_factory: pytest.TempPathFactory,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    directory = tmp_path_factory.mktemp("scaling")
    env = {key: value for key, value in payload_env.items() if key != "TF_CONFIG"}
    out = directory / "results.json"
    process = subprocess.run(
        payload_argv(write_scaling_suite(directory, TINY), out),
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    return process, json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_trains_and_its_document_validates(
    mirrored_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]], schema_validator: Any
) -> None:
    _, document = mirrored_run
    assert list(schema_validator.iter_errors(document)) == []
    assert document["errors"] == []
    throughput = samples(document, "train_throughput", "images_per_sec")
    assert [(s["metadata"]["replicas"], s["metadata"]["global_batch"]) for s in throughput] == [(1, 8), (2, 16)]
    for sample in throughput:
        assert sample["value"] > 0
        assert sample["metadata"]["strategy"] == "mirrored"
        assert sample["metadata"]["per_replica_batch"] == 8
        assert sample["metadata"]["repeats_timed"] == 2
    step_rows = samples(document, "train_throughput", "step_time_ms_p50")
    assert [s["metadata"]["timed_steps"] for s in step_rows] == [2 * 4, 2 * 4]  # warm-up left out of each repeat
    first, last = (s["value"] for s in samples(document, "train", "loss") if s["metadata"]["replicas"] == 2)
    assert last < first  # the two replicas' synchronised updates lowered the loss


@pytest.mark.slow
def test_mirrored_records_scaling_efficiency_against_one_replica(
    mirrored_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    _, document = mirrored_run
    (efficiency,) = samples(document, "train_throughput", "scaling_efficiency")
    by_replicas = {
        s["metadata"]["replicas"]: s["value"] for s in samples(document, "train_throughput", "images_per_sec")
    }
    assert efficiency["metadata"]["replicas"] == 2
    assert efficiency["metadata"]["baseline_replicas"] == 1
    assert efficiency["value"] == pytest.approx(by_replicas[2] / (2 * by_replicas[1]))


@pytest.mark.slow
def test_replica_counts_above_the_devices_are_skipped_with_a_note(
    mirrored_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    process, document = mirrored_run
    assert "replica_counts [4] skipped: only 2 cpu device(s) available" in process.stdout
    assert {s["metadata"]["skipped_replica_counts"] for s in document["samples"]} == {"4"}
    assert {s["metadata"]["devices_available"] for s in document["samples"]} == {2}


@pytest.mark.slow
def test_replica_counts_none_of_which_fits_is_a_bad_param(
    tmp_path: Path, payload_env: dict[str, str], payload_argv: Callable[[Path, Path], list[str]]
) -> None:
    out = tmp_path / "results.json"
    process = subprocess.run(
        payload_argv(write_scaling_suite(tmp_path, {**TINY, "replica_counts": [3, 4]}), out),
        env=payload_env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1] == (
        "keras_bench: error: param 'replica_counts': every count exceeds the 2 cpu device(s) available, received [3, 4]"
    )


def test_another_backend_is_refused_in_one_line_before_importing_keras(
    tmp_path: Path, payload_env: dict[str, str], payload_argv: Callable[[Path, Path], list[str]]
) -> None:
    out = tmp_path / "results.json"
    process = subprocess.run(
        payload_argv(write_scaling_suite(tmp_path, TINY), out),
        env={**payload_env, "KERAS_BACKEND": "jax"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 2
    assert process.stderr.strip() == (
        "keras_bench: error: suite 'scaling': tf.distribute needs KERAS_BACKEND=tensorflow, received backend jax"
    )
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["errors"][0]["stage"] == "params"
    assert document["software"]["backend"] == "jax"


def test_a_single_replica_count_is_accepted_as_a_one_item_list() -> None:
    effective = resolve_params(SUITES["scaling"].params, {"replica_counts": 2})
    assert effective["replica_counts"] == [2]
    with pytest.raises(ParamError, match=r"^param 'replica_counts': .* received \[1, 0\]"):
        resolve_params(SUITES["scaling"].params, {"replica_counts": [1, 0]})


def test_scaling_yaml_params_equal_the_payload_defaults(benchmarks_dir: Path) -> None:
    yaml = pytest.importorskip("yaml")
    declared = yaml.safe_load((benchmarks_dir / "suites" / "scaling.yaml").read_text(encoding="utf-8"))
    assert declared["name"] == "scaling"
    assert declared["params"] == {spec.name: spec.default for spec in SUITES["scaling"].params}
