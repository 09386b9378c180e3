"""`orchestrate logs RUN [--follow]` as real processes: a finished run's stored log, a running run's live log,
a rented run's log per machine; and where `make demo` keeps its state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import api
from tests.conftest import FAKE_MAIN_HEADER, REPO, cli_env, run_cli

# The sshd fixtures live with the integration tests; a two-machine run needs them here too.
from tests.integration.conftest import client_key, make_host_key, sshd, sshd_binary  # noqa: F401

pytestmark = pytest.mark.slow

# Prints, waits for a file the test creates, prints again: the test decides when the payload ends.
WAITING_PAYLOAD = FAKE_MAIN_HEADER + """
print("first line from the payload", flush=True)
while not os.path.exists(os.environ["RELEASE_FILE"]):
    time.sleep(0.1)
print("second line from the payload", flush=True)
write([sample("train_throughput", "images_per_sec", 5.0)])
"""


def _follow(home: Path, run_id: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "logs", run_id, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(home))


def _running_run(home: Path, deadline: float) -> str:
    """Waits until the store's one run has its payload running and has printed its first line; returns its id."""
    while time.monotonic() < deadline:
        runs = api.list_runs(home=home) if (home / "state.db").exists() else []
        logs = list((home / "machines").glob("*/payload.log")) if runs and runs[0].state == "running" else []
        if logs and "first line" in logs[0].read_text():
            return runs[0].id
        time.sleep(0.1)
    raise AssertionError("the payload never started")


def test_logs_of_a_finished_local_run_come_from_the_store(home: Path, fake_payload: Callable[[str], Path]) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + """
print("hello from the payload", flush=True)
print("warming up", file=sys.stderr, flush=True)
write([sample("train_throughput", "images_per_sec", 5.0)])
""")
    result = run_cli(home, "run", "--quiet", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 0, result.stderr
    # The live output shows every step, the plan first (item 9: it used to skip the reporter).
    assert result.stdout.splitlines()[0].startswith("✓ plan") and "suite smoke" in result.stdout.splitlines()[0]
    [run] = api.list_runs(home=home)
    assert not (home / "machines" / run.id).exists()  # torn down: only the store has the log now
    logs = run_cli(home, "logs", run.id[:-2])
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == ["hello from the payload", "warming up"]
    assert run_cli(home, "logs", run.id, "--machine", "localhost").stdout == logs.stdout

    wrong_machine = run_cli(home, "logs", run.id, "--machine", "box9")
    assert wrong_machine.returncode == 2 and "localhost" in wrong_machine.stderr
    unknown = run_cli(home, "logs", "r-19990101-000000-dead")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.splitlines()[0] == "error: no run with id 'r-19990101-000000-dead'"
    assert "Traceback" not in unknown.stderr


def test_a_failed_runs_whole_log_is_kept_not_only_its_last_lines(
    home: Path, fake_payload: Callable[[str], Path]
) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + """
for i in range(100):
    print(f"step {i}", flush=True)
raise SystemExit(3)
""")
    result = run_cli(home, "run", "--quiet", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 1
    [run] = api.list_runs(home=home)
    assert run.log_tail is not None and "step 0\n" not in run.log_tail  # the run row keeps the last lines
    logs = run_cli(home, "logs", run.id)
    assert logs.stdout.splitlines() == [f"step {i}" for i in range(100)]


def test_logs_of_a_running_local_run_are_read_live_and_follow_streams_until_the_payload_ends(
    home: Path, fake_payload: Callable[[str], Path], tmp_path: Path
) -> None:
    package = fake_payload(WAITING_PAYLOAD)
    release = tmp_path / "release"
    orchestrate = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--provider", "local", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=cli_env(home, ORCHESTRATE_PAYLOAD_DIR=str(package), RELEASE_FILE=str(release)),
    )
    followers: list[subprocess.Popen[str]] = []
    try:
        run_id = _running_run(home, time.monotonic() + 120)
        # Without --follow: what the payload has written so far, and back at once.
        now = run_cli(home, "logs", run_id, timeout=60)
        assert now.returncode == 0 and now.stdout == "first line from the payload\n", now.stderr

        follower, interrupted = _follow(home, run_id, "--follow"), _follow(home, run_id, "-f")
        followers += [follower, interrupted]
        for process in followers:
            assert process.stdout is not None
            assert process.stdout.readline() == "first line from the payload\n"
        # Ctrl-C ends a follower cleanly; the other one keeps following.
        interrupted.send_signal(signal.SIGINT)
        _, stderr = interrupted.communicate(timeout=60)
        assert interrupted.returncode == 130 and "Traceback" not in stderr
        assert follower.poll() is None  # still following: the payload has not ended

        release.touch()
        rest, stderr = follower.communicate(timeout=120)
        assert follower.returncode == 0, stderr
        assert rest == "second line from the payload\n", stderr
        assert "Traceback" not in stderr
        assert orchestrate.wait(timeout=120) == 0
    finally:
        release.touch()
        for process in [*followers, orchestrate]:
            if process.poll() is None:
                process.kill()
                process.wait()
    # Once the run has ended the same command reads the store.
    assert run_cli(home, "logs", run_id, "-f").stdout.splitlines() == [
        "first line from the payload", "second line from the payload"]


def test_an_abandoned_runs_log_is_read_from_its_machine(home: Path, fake_payload: Callable[[str], Path],
                                                         tmp_path: Path) -> None:
    package = fake_payload(WAITING_PAYLOAD)
    release = tmp_path / "release"
    orchestrate = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--provider", "local", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=cli_env(home, ORCHESTRATE_PAYLOAD_DIR=str(package), RELEASE_FILE=str(release)),
    )
    try:
        run_id = _running_run(home, time.monotonic() + 120)
        orchestrate.kill()  # SIGKILL: the payload goes on without anyone recording it
        orchestrate.wait(timeout=30)
        logs = run_cli(home, "logs", run_id, timeout=60)
        assert logs.returncode == 0 and logs.stdout == "first line from the payload\n", logs.stderr
        assert "abandoned" in logs.stderr
    finally:
        release.touch()
        if orchestrate.poll() is None:
            orchestrate.kill()
            orchestrate.wait()
        run_cli(home, "down", "--all")


def test_a_rented_run_on_two_boxes_keeps_each_machines_log(
    home: Path, sshd: Callable[..., Any], fake_payload: Callable[[str], Path], tmp_path: Path,  # noqa: F811
) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + """
print("running in", os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(os.getcwd())))), flush=True)
write([sample("train_throughput", "images_per_sec", 5.0)])
""")
    hosts = [
        {"name": f"box{i}", "host": server.host, "port": server.port, "user": server.user,
         "key_path": str(server.client_key_path), "host_key": server.host_key, "gpu": {"model": "T4", "count": 1},
         "price": {"per_hour": 3.6}, "prepare": "image", "python": sys.executable,
         "workdir": str(tmp_path / f"box{i}-home" / "orchestrate")}
        for i, server in enumerate([sshd(), sshd()])
    ]
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": hosts}))
    result = run_cli(home, "run", "--provider", "rented", "--host", "box0", "--host", "box1", "--quiet",
                     ORCHESTRATE_INVENTORY=str(inventory), ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 0, result.stderr
    [run] = api.list_runs(home=home)
    logs = run_cli(home, "logs", run.id)
    assert logs.stdout.splitlines() == ["[box0] running in box0-home", "[box1] running in box1-home"]
    one = run_cli(home, "logs", run.id, "--machine", "box1")
    assert one.stdout == "running in box1-home\n"


def test_make_demo_keeps_its_state_in_orchestrate_home_when_set(tmp_path: Path) -> None:
    def demo_homes(**env: str) -> set[str]:
        plan = subprocess.run(["make", "--dry-run", "--always-make", "demo"], cwd=REPO, capture_output=True,
                              text=True, timeout=60, env={**os.environ, **env}, check=True).stdout
        return {word.split("=", 1)[1].strip("'") for line in plan.splitlines() if "orchestrate" in line
                for word in line.split() if word.startswith("ORCHESTRATE_HOME=")}

    mine = tmp_path / "my-orchestrate"
    assert demo_homes(ORCHESTRATE_HOME=str(mine)) == {str(mine)}
    assert demo_homes(ORCHESTRATE_HOME="", HOME=str(tmp_path)) == {str(tmp_path / ".orchestrate")}
