"""Shared fixtures: an isolated Orchestrate home, and the CLI run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAYLOAD_SOURCE = REPO / "benchmarks" / "keras_bench"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $ORCHESTRATE_HOME that does not exist yet."""
    path = tmp_path / "orchestrate-home"
    monkeypatch.setenv("ORCHESTRATE_HOME", str(path))
    return path


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for running `orchestrate` as a subprocess against ``home``."""
    env = dict(os.environ)
    env.update({"ORCHESTRATE_HOME": str(home), "COLUMNS": "200", **extra})
    return env


def run_cli(home: Path, *args: str, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Runs `python -m orchestrator ARGS` to completion and returns its result."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True, text=True, timeout=timeout, env=cli_env(home, **extra_env),
    )


@pytest.fixture
def fake_payload(tmp_path: Path) -> Callable[[str], Path]:
    """Writes a stand-in ``keras_bench`` package whose ``__main__`` is the given code.

    It ships the real results schema, so the orchestrator validates what it writes as usual. Point
    ``ORCHESTRATE_PAYLOAD_DIR`` at the returned directory.
    """

    def make(main_code: str) -> Path:
        package = tmp_path / "fake_payload" / "keras_bench"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "__main__.py").write_text(textwrap.dedent(main_code))
        (package / "results.schema.json").write_bytes((PAYLOAD_SOURCE / "results.schema.json").read_bytes())
        suites = package.parent / "suites"
        suites.mkdir()
        (suites / "smoke.yaml").write_bytes((REPO / "benchmarks" / "suites" / "smoke.yaml").read_bytes())
        return package

    return make


# A payload main that writes a valid results document; the test's code decides what else it does.
FAKE_MAIN_HEADER = '''
import json, os, sys, time
args = sys.argv[1:]
if "--check" in args:
    sys.exit(0)
suite = json.load(open(args[args.index("--suite") + 1]))
out = args[args.index("--out") + 1]
def document(samples, errors=()):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"schema_version": 1, "run_id": suite["run_id"], "suite": suite["suite"],
           "host": {"hostname": "fake", "cpu": "fake", "cpu_count": 1, "gpus": []},
           "software": {"python": "3", "keras": "3", "backend": "tensorflow", "backend_version": "2",
                        "cuda": None, "numpy": "2"},
           "params": suite["params"], "samples": samples, "utilisation": [],
           "timings": {"started_at": now, "finished_at": now, "import_s": 0.0, "data_s": 0.0,
                       "compute_s": 0.1, "total_s": 0.2},
           "errors": list(errors)}
def write(samples, errors=()):
    json.dump(document(samples, errors), open(out + ".tmp", "w")); os.replace(out + ".tmp", out)
def sample(benchmark, metric, value, unit="images/s"):
    return {"benchmark": benchmark, "metric": metric, "value": value, "unit": unit,
            "metadata": {"model": "small_cnn", "batch_size": 32, "precision": "float32"}}
'''


def group_alive(pgid: int) -> bool:
    """Whether any process of a process group is alive; zombies (exited, not yet reaped) do not count."""
    import psutil

    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return False


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Feeds the fault matrix's report (here, not in tests/faults/conftest.py: under pytest-xdist the controller
    receives every worker's reports but loads only this conftest)."""
    from tests.faults import report as fault_report

    fault_report.keep(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Writes docs/reliability.md when the whole fault matrix ran (in the controller only, under pytest-xdist)."""
    if hasattr(session.config, "workerinput"):
        return
    from tests.faults import report as fault_report

    fault_report.write_if_complete()


# Folders whose tests start servers or outside tools, and fixtures that do, wherever they are used: such tests are
# marked `server`, and `make check` (the edit loop) leaves them out with the `slow` ones.
SERVER_FOLDERS = ("integration", "faults", "iac")
SERVER_FIXTURES = frozenset({"sshd", "moto_server", "arm", "arm_module", "rented_box", "postgres"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the tests that start a server (see SERVER_FOLDERS and SERVER_FIXTURES) with `server`, and puts the
    longest first.

    Under pytest-xdist the workers take tests in collection order: the payload suites' groups (each a few payload
    processes on one worker, up to two minutes) and then the other `slow` tests go first, so that the run's last
    minutes are spent on short tests spread over every worker rather than one long test on one worker
    (docs/performance.md, "The test suite's wall time"). The order within each kind is kept.
    """
    tests = Path(__file__).resolve().parent
    for item in items:
        path = Path(str(item.path))
        folder = path.relative_to(tests).parts[0] if path.is_relative_to(tests) else ""
        if folder in SERVER_FOLDERS or SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)
    items.sort(key=lambda item: (not item.get_closest_marker("xdist_group"), not item.get_closest_marker("slow")))
