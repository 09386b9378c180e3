"""Issue 16, "nothing lost": the run store under many writers and readers at once, and a SIGKILL while a run records.

Twenty `orchestrate run` processes on loopback rented boxes (real sshd) and on the dev box share one store while
`status` and `report` read it in other processes: no "database is locked" reaches anyone and every run is recorded
whole. A run SIGKILLed inside its record transaction leaves a store that opens, with none of its samples, and a run
that `status` calls abandoned and `down` records as interrupted, with its cost.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import StoreError
from orchestrator.store import Store
from tests.conftest import FAKE_MAIN_HEADER, cli_env, run_cli
from tests.integration.conftest import client_key as client_key  # the fixtures
from tests.integration.conftest import make_host_key as make_host_key
from tests.integration.conftest import sshd as sshd
from tests.integration.conftest import sshd_binary as sshd_binary
from tests.store_sql import sql

RUNS = 20
BOXES_PER_SERVER = 5  # two sshd processes, five inventory boxes on each: well under sshd's MaxStartups of 10
SAMPLES = 2000  # per run: enough that recording takes a while, little enough for a two-core machine
READERS = (("status",), ("status", "--json"), ("report", "--json"))
# The payload writes SAMPLES samples (its environment may ask for another count) and a log line.
PAYLOAD = FAKE_MAIN_HEADER + """
count = int(os.environ.get("DURABILITY_SAMPLES", "2000"))
print("measuring", count, "samples", flush=True)
write([sample("train_throughput", "images_per_sec", float(i)) for i in range(count)])
"""
FAILURE_WORDS = ("locked", "Traceback", "busy")


@pytest.fixture
def payload(fake_payload: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    package = fake_payload(PAYLOAD)
    monkeypatch.setenv("ORCHESTRATE_PAYLOAD_DIR", str(package))
    return package


def _inventory(tmp_path: Path, servers: list[Any]) -> Path:
    """Inventory boxes box0…: BOXES_PER_SERVER of them on each server, each with its own work directory."""
    hosts = [{"name": f"box{i}", "host": s.host, "port": s.port, "user": s.user, "key_path": str(s.client_key_path),
              "host_key": s.host_key, "gpu": {"model": "T4", "count": 1}, "price": {"per_hour": 3.6},
              "prepare": "image", "python": sys.executable, "workdir": str(tmp_path / f"box{i}-home" / "orchestrate")}
             for i, s in enumerate(server for server in servers for _ in range(BOXES_PER_SERVER))]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": hosts}))
    return path


class _Readers:
    """Runs each reader command in a loop in its own thread, keeping every result that failed."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.stop = threading.Event()
        self.done: dict[tuple[str, ...], int] = {args: 0 for args in READERS}
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._loop, args=(args,), daemon=True) for args in READERS]

    def _loop(self, args: tuple[str, ...]) -> None:
        while not self.stop.is_set():
            result = run_cli(self.home, *args, timeout=120)
            text = result.stdout + result.stderr
            if result.returncode != 0 or any(word in text for word in FAILURE_WORDS):
                self.failures.append(f"{' '.join(args)} exited {result.returncode}: {result.stderr[-1500:]}")
            self.done[args] += 1

    def __enter__(self) -> _Readers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=180)


@pytest.mark.slow
def test_twenty_runs_at_once_with_readers_lose_nothing_and_nobody_sees_a_locked_store(
    home: Path, tmp_path: Path, sshd: Callable[..., Any], payload: Path
) -> None:
    servers = [sshd() for _ in range(RUNS // BOXES_PER_SERVER // 2)]
    inventory = _inventory(tmp_path, servers)
    rented = [("run", "--provider", "rented", "--host", f"box{i}") for i in range(RUNS // 2)]
    local = [("run", "--provider", "local", "--price-per-hour", "3.6") for _ in range(RUNS - len(rented))]
    env = cli_env(home, ORCHESTRATE_INVENTORY=str(inventory), DURABILITY_SAMPLES=str(SAMPLES))
    run_cli(home, "status")  # the store exists before the crowd arrives, as it does for a user
    started = time.monotonic()
    with _Readers(home) as readers:
        runs = [subprocess.Popen([sys.executable, "-m", "orchestrator", *args, "--quiet"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for args in [*rented, *local]]
        try:
            outputs = [run.communicate(timeout=300) for run in runs]
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()
                    run.wait()
        while min(readers.done.values()) == 0 and not readers.failures:  # every reader has read at least once
            time.sleep(0.1)
    wall_s = time.monotonic() - started

    failed = [f"exit {run.returncode}: {stderr[-1500:]}" for run, (stdout, stderr) in zip(runs, outputs, strict=True)
              if run.returncode != 0 or any(word in stdout + stderr for word in FAILURE_WORDS)]
    assert failed == [], failed
    assert readers.failures == [], readers.failures
    with Store(home) as store:
        recorded = store.list_runs()
        assert len(recorded) == RUNS and {row.state for row in recorded} == {"succeeded"}
        assert sorted(row.provider for row in recorded) == ["local"] * (RUNS - RUNS // 2) + ["rented"] * (RUNS // 2)
        for row in recorded:
            [(count, total)] = sql(store, "SELECT COUNT(*), SUM(value) FROM samples WHERE run_id=?", (row.id,))
            assert (count, total) == (SAMPLES, sum(range(SAMPLES))), row.id
            assert row.cost_usd is not None and row.cost_usd > 0, row.id
            assert [event.step for event in store.events(row.id)][-1] == "record"
        assert store.machines(live_only=True) == [] and store.leases() == {}
    print(f"\n{RUNS} runs with {sum(readers.done.values())} reads ({readers.done}) in {wall_s:.1f} s")


def _holds_write_lock(database: Path) -> bool:
    """Whether another connection holds the store's write lock now (this one asks once, without waiting)."""
    probe = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as error:
        if "locked" not in str(error):
            raise
        return True
    finally:
        probe.close()


def _record_started(database: Path, run_id: str) -> bool:
    if not database.exists():
        return False
    with Store(database.parent) as store:
        return any(row["step"] == "record" for row in sql(store,
            "SELECT step FROM events WHERE run_id=?", (run_id,)))


@pytest.mark.slow
def test_a_run_killed_inside_its_record_transaction_leaves_a_store_that_opens_and_a_run_down_can_close(
    home: Path, payload: Path
) -> None:
    run_id = "r-20261130-120000-dead"
    database = home / "state.db"
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--provider", "local", "--price-per-hour", "3.6", "--quiet",
         "--run-id", run_id],
        env=cli_env(home, DURABILITY_SAMPLES="50000"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not _record_started(database, run_id):
            assert orchestrator.poll() is None, f"the run ended before recording: {orchestrator.stderr}"
            assert time.monotonic() < deadline, "the run never reached its record step"
            time.sleep(0.01)
        # Stopped, it holds still; let it on in short steps until it is inside the transaction (holds the lock).
        orchestrator.send_signal(signal.SIGSTOP)
        while not _holds_write_lock(database):
            with Store(home) as store:
                assert store.get_run(run_id).state == "running", "the record committed before the kill landed"
            assert time.monotonic() < deadline, "the record step never took the write lock"
            orchestrator.send_signal(signal.SIGCONT)
            time.sleep(0.005)
            orchestrator.send_signal(signal.SIGSTOP)
        orchestrator.send_signal(signal.SIGKILL)
        orchestrator.wait(timeout=30)
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()
            orchestrator.wait()

    with Store(home) as store:  # opens: the uncommitted transaction is simply not there
        assert sql(store, "PRAGMA integrity_check")[0][0] == "ok"
        run = store.get_run(run_id)
        assert (run.state, run.abandoned) == ("running", True)
        assert sql(store, "SELECT COUNT(*) FROM samples WHERE run_id=?", (run_id,))[0][0] == 0  # none, not half
        assert [(e.step, e.outcome) for e in store.events(run_id)][-1] == ("record", None)

    listed = run_cli(home, "status")
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout and "abandoned" in listed.stdout and "orchestrate down" in listed.stdout
    shown = run_cli(home, "status", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "abandoned" in shown.stdout and f"orchestrate down {run_id}" in shown.stdout
    assert "record" in shown.stdout
    as_json = run_cli(home, "status", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)[0]["abandoned"] is True
    assert run_cli(home, "report", "--json").returncode == 0

    down = run_cli(home, "down", "--all")
    assert down.returncode == 0, down.stderr
    assert f"{run_id} → interrupted" in down.stdout
    with Store(home) as store:
        run = store.get_run(run_id)
        assert (run.state, run.abandoned) == ("interrupted", False)
        assert run.error is not None and "abandoned" in run.error
        # The machine ran for seconds at $3.6/h: the bill is the time it was up, not nothing.
        assert run.cost_usd is not None and run.cost_usd > 0, store.costs(run_id)
    for words in (("status",), ("status", run_id), ("report", "--json")):
        again = run_cli(home, *words)
        assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr


# The store's own waits, with a held lock standing in for a slow writer: no real time passes on the fake clock.


class _FakeTime:
    """A clock that only moves when slept on; ``on_sleep`` runs at every sleep."""

    def __init__(self, on_sleep: Callable[[], None] = lambda: None) -> None:
        self.now = 0.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        self.on_sleep()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to a store with one run, holding its write lock (a writer that takes its time)."""
    with Store(tmp_path) as store:
        store.create_run("r-1", provider="local", suite="smoke", name=None, spec={})
    connection = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("UPDATE runs SET name='being written' WHERE id='r-1'")
    yield connection
    connection.close()


def test_a_write_waits_past_the_busy_timeout_for_a_slow_writer_and_lands(
    tmp_path: Path, holder: sqlite3.Connection
) -> None:
    def writer_done() -> None:
        if holder.in_transaction:
            holder.execute("COMMIT")

    fake = _FakeTime(on_sleep=writer_done)
    with Store(tmp_path, lock_wait_s=0.05, clock=fake.clock, sleep=fake.sleep) as store:
        store.finish_run("r-1", state="succeeded", duration_s=1.0, error=None, log_tail=None, results=None,
                         costs=[])
        assert fake.sleeps == 1  # the busy timeout ran out once; the second try got the lock
        run = store.get_run("r-1")
        assert (run.state, run.name) == ("succeeded", "being written")


def test_a_write_blocked_past_the_wait_fails_with_a_clear_error_not_database_is_locked(
    tmp_path: Path, holder: sqlite3.Connection
) -> None:
    fake = _FakeTime()
    with Store(tmp_path, lock_wait_s=0.05, clock=fake.clock, sleep=fake.sleep) as store:
        with pytest.raises(StoreError) as raised:
            store.set_state("r-1", "running")
        assert "stayed busy with another process's write for 0.05 s" in str(raised.value)
        assert "database is locked" not in str(raised.value)
        assert raised.value.hint is not None and "Ctrl-Z" in raised.value.hint
        assert store.get_run("r-1").state == "provisioning"


def test_opening_and_reading_an_up_to_date_store_never_waits_for_the_write_lock(
    tmp_path: Path, holder: sqlite3.Connection
) -> None:
    """Opening used to take the write lock (to check the schema), so `status` queued behind recording runs and,
    past the busy timeout, failed with "database is locked"."""
    fake = _FakeTime()
    with Store(tmp_path, lock_wait_s=0.05, clock=fake.clock, sleep=fake.sleep) as store:
        [run] = store.list_runs()
        assert (run.id, run.name) == ("r-1", None)  # the committed state; the held write is not seen
        assert fake.sleeps == 0
