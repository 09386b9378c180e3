"""MultiWorkerMirroredStrategy from TF_CONFIG: the role parsing, and two worker processes on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keras_bench.errors import ParamError
from keras_bench.training.distribute import WorkerRole, read_tf_config

# Its module-scoped payload runs are shared by its tests: one worker (make test's --dist loadgroup) runs them once.
pytestmark = pytest.mark.xdist_group("multiworker")

WORKER_TIMEOUT_S = 180
TINY = {"per_replica_batch": 8, "image_size": 16, "steps": 4, "warmup_steps": 2, "repeats": 2, "worker_timeout_s": 120}


def tf_config(cluster: dict[str, list[str]], task_type: str, index: int) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def free_ports(count: int) -> list[int]:
    """Ports the kernel had free a moment ago: bound together so they differ, then released for TensorFlow."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_tf_config_roles_count_the_chief_first() -> None:
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert read_tf_config(tf_config(cluster, "chief", 0)) == WorkerRole(3, "chief", 0, 0)
    assert read_tf_config(tf_config(cluster, "worker", 1)) == WorkerRole(3, "worker", 1, 2)
    without_chief = read_tf_config(tf_config({"worker": ["b:1", "c:1"]}, "worker", 0))
    assert without_chief is not None and without_chief.is_chief


def test_unset_or_empty_tf_config_means_a_single_node_run() -> None:
    assert read_tf_config({}) is None
    assert read_tf_config({"TF_CONFIG": "  "}) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{cluster", "not JSON"),
        ('{"cluster": {"worker": ["a:1"]}}', 'expected an object with "cluster" and "task"'),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', 'expected "task" to name'),
        ('{"cluster": {"worker": ["a:1"], "ps": ["p:1"]}, "task": {"type": "worker"}}', "parameter servers"),
    ],
)
def test_bad_tf_config_is_a_one_line_error_echoing_it(text: str, problem: str) -> None:
    with pytest.raises(ParamError, match="^environment variable TF_CONFIG: ") as raised:
        read_tf_config({"TF_CONFIG": text})
    assert problem in str(raised.value)
    assert str(raised.value).endswith(f"received {text}")


def test_a_bad_tf_config_fails_the_payload_with_exit_2(
    tmp_path: Path, payload_env: dict[str, str], payload_argv: Callable[[Path, Path], list[str]]
) -> None:
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"schema_version": 1, "suite": "scaling", "run_id": "r-mw", "params": TINY}))
    process = subprocess.run(
        payload_argv(suite, tmp_path / "results.json"),
        env={**payload_env, "TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief"}}'},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 2
    assert process.stderr.strip().startswith('keras_bench: error: environment variable TF_CONFIG: expected "task"')


class WorkerRuns:
    """Two payload processes, one per worker of a 127.0.0.1 cluster, and the documents they wrote."""

    def __init__(self, processes: list[subprocess.Popen[bytes]], outputs: list[Path], logs: list[Path]) -> None:
        self.processes = processes
        self.outputs = outputs
        self.logs = logs  # stdout and stderr of each worker; files, so a chatty worker never blocks on a pipe

    def wait(self) -> list[dict[str, Any]]:
        codes = [process.wait(timeout=WORKER_TIMEOUT_S) for process in self.processes]
        tails = [log.read_text(encoding="utf-8", errors="replace")[-2000:] for log in self.logs]
        assert codes == [0, 0], f"worker exit codes {codes}; output: {tails}"
        return [json.loads(out.read_text(encoding="utf-8")) for out in self.outputs]


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> Iterator[WorkerRuns]:
    directory = tmp_path_factory.mktemp("multiworker")
    suite = directory / "suite.json"
    suite.write_text(json.dumps({"schema_version": 1, "suite": "scaling", "run_id": "r-mw", "params": TINY}))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes: list[subprocess.Popen[bytes]] = []
    outputs = [directory / f"worker{index}.json" for index in range(2)]
    logs = [directory / f"worker{index}.log" for index in range(2)]
    try:
        for index, (out, log) in enumerate(zip(outputs, logs, strict=True)):
            with log.open("wb") as log_file:
                processes.append(
                    subprocess.Popen(
                        payload_argv(suite, out),
                        env={**payload_env, **tf_config(cluster, "worker", index)},
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield WorkerRuns(processes, outputs, logs)
    finally:
        for process in processes:  # a worker left waiting for its peer must not outlive the tests
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


@pytest.fixture(scope="module")
def worker_documents(two_workers: WorkerRuns) -> list[dict[str, Any]]:
    return two_workers.wait()


@pytest.mark.slow
def test_two_workers_on_loopback_train_and_both_documents_validate(
    worker_documents: list[dict[str, Any]], schema_validator: Any
) -> None:
    for index, document in enumerate(worker_documents):
        assert list(schema_validator.iter_errors(document)) == []
        assert document["errors"] == []
        (own,) = [
            s
            for s in document["samples"]
            if (s["benchmark"], s["metric"]) == ("worker_train_throughput", "images_per_sec")
        ]
        assert own["value"] > 0
        metadata = own["metadata"]
        assert metadata["strategy"] == "multi_worker_mirrored"
        assert metadata["worker_index"] == index
        assert (metadata["workers"], metadata["replicas"], metadata["local_replicas"]) == (2, 2, 1)
        assert (metadata["per_replica_batch"], metadata["global_batch"]) == (8, 16)


@pytest.mark.slow
def test_only_the_chief_records_the_cluster_throughput_and_loss(worker_documents: list[dict[str, Any]]) -> None:
    chief, other = worker_documents
    cluster_rows = [s for s in chief["samples"] if s["benchmark"] == "train_throughput"]
    assert {s["metric"] for s in cluster_rows} >= {"images_per_sec", "step_time_ms_p50", "step_time_ms_p90"}
    assert not [s for s in other["samples"] if s["benchmark"] in ("train_throughput", "train")]
    (cluster,) = [s for s in cluster_rows if s["metric"] == "images_per_sec"]
    (chief_own,) = [
        s for s in chief["samples"] if (s["benchmark"], s["metric"]) == ("worker_train_throughput", "images_per_sec")
    ]
    assert cluster["value"] == pytest.approx(2 * chief_own["value"])  # the chief holds half the replicas
    first, last = (s["value"] for s in chief["samples"] if (s["benchmark"], s["metric"]) == ("train", "loss"))
    assert last < first
