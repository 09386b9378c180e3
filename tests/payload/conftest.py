"""Shared fixtures for the payload tests: real Keras, real subprocesses, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
# The payload is not an installed package on the machines it runs on; it is imported from benchmarks/.
if str(BENCHMARKS_DIR) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS_DIR))

PAYLOAD_TIMEOUT_S = 180


@pytest.fixture
def write_suite(tmp_path: Path) -> Callable[..., Path]:
    """Returns a function that writes a suite document (run id "r-test") and returns its path.

    Keyword arguments replace or add top-level fields, bad ones included.
    """

    def write(params: Mapping[str, object] | None = None, /, **fields: object) -> Path:
        document: dict[str, object] = {
            "schema_version": 1,
            "suite": "smoke",
            "run_id": "r-test",
            "params": {},
        }
        if params is not None:
            document["params"] = dict(params)
        document.update(fields)
        path = tmp_path / "suite.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The benchmarks/ folder: the payload package and the suite YAML files."""
    return BENCHMARKS_DIR


@pytest.fixture(scope="session")
def payload_env() -> dict[str, str]:
    """The environment the orchestrator gives the payload: PYTHONPATH pointing at benchmarks/, KERAS_BACKEND set."""
    env = os.environ.copy()
    env.setdefault("KERAS_BACKEND", "tensorflow")  # as the orchestrator sets it from the run's spec (lifecycle.py)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCHMARKS_DIR), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="session")
def payload_argv() -> Callable[[Path, Path], list[str]]:
    """Returns a function that builds the payload's command line, exactly as the orchestrator runs it."""

    def argv(suite: Path, out: Path) -> list[str]:
        return [sys.executable, "-m", "keras_bench", "--suite", str(suite), "--out", str(out)]

    return argv


@pytest.fixture
def run_payload(
    payload_env: dict[str, str], payload_argv: Callable[[Path, Path], list[str]]
) -> Callable[[Path, Path], subprocess.CompletedProcess[str]]:
    """Returns a function that runs the payload as a subprocess and waits for it."""

    def run(suite: Path, out: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            payload_argv(suite, out),
            env=payload_env,
            capture_output=True,
            text=True,
            timeout=PAYLOAD_TIMEOUT_S,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def schema_validator() -> object:
    """A Draft 2020-12 validator for the results schema, the way the orchestrator builds it."""
    jsonschema = pytest.importorskip("jsonschema")
    from keras_bench.results import SCHEMA_PATH

    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


@pytest.fixture(autouse=True)
def _quiet_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    # cli.main sets this with setdefault; owning it here keeps in-process runs from leaking it between tests.
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
