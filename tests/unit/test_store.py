from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator import api
from orchestrator.cost import CostLine
from orchestrator.errors import StoreError, UnknownRun
from orchestrator.machine import Access, Environment, LeaseState, Machine, Placement
from orchestrator.store import (
    SAMPLE_SEPARATOR,
    Evictions,
    LogRow,
    MachineBill,
    RunFacts,
    Store,
    unpack_key,
)
from orchestrator.store import schema as store_module
from tests.store_sql import sql


def _doc(run_id: str, samples: list[dict[str, object]]) -> dict[str, object]:
    return {"run_id": run_id, "host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}


def test_the_store_uses_wal_and_keeps_runs_events_and_samples(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert sql(store, "PRAGMA journal_mode")[0][0] == "wal"
    store.create_run("r-1", provider="local", suite="smoke", name=None, spec={"suite": "smoke"})
    event = store.start_event("r-1", "provision")
    store.end_event(event, "ok", "made")
    sample = {"benchmark": "train", "metric": "accuracy", "value": 0.97, "unit": "fraction", "metadata": {}}
    store.finish_run("r-1", state="succeeded", duration_s=3.0, error=None, log_tail=None,
                     results={"m": _doc("r-1", [sample])},
                     costs=[CostLine(component="compute", seconds=3.0, billed_seconds=3.0, price_per_hour=3600.0,
                                     amount_usd=3.0, rule="per_second")])
    store.close()

    reopened = Store(tmp_path)
    run = reopened.get_run("r-1")
    assert (run.state, run.duration_s, run.cost_usd) == ("succeeded", 3.0, 3.0)
    assert [(e.step, e.outcome, e.detail) for e in reopened.events("r-1")] == [("provision", "ok", "made")]
    assert sql(reopened, "SELECT value FROM samples WHERE run_id='r-1'")[0][0] == 0.97


def test_ingest_is_all_or_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create_run("r-1", provider="local", suite="smoke", name=None, spec={})
    good = {"benchmark": "train", "metric": "accuracy", "value": 0.9, "unit": "fraction", "metadata": {}}
    bad = {"benchmark": "train", "metric": "loss", "value": None, "unit": "", "metadata": {}}
    with pytest.raises((StoreError, TypeError)):
        store.finish_run("r-1", state="succeeded", duration_s=1.0, error=None, log_tail=None,
                         results={"m": _doc("r-1", [good, bad])}, costs=[])
    assert store.get_run("r-1").state == "provisioning"
    assert sql(store, "SELECT COUNT(*) FROM samples")[0][0] == 0


def test_run_ids_resolve_from_a_unique_prefix(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for run_id in ("r-20261128-1", "r-20261128-2", "r-20261129-1"):
        store.create_run(run_id, provider="local", suite="smoke", name=None, spec={})
    assert store.resolve_run_id("r-20261129") == "r-20261129-1"
    assert store.resolve_run_id("r-20261128-1") == "r-20261128-1"
    with pytest.raises(UnknownRun, match="matches 2 runs"):
        store.resolve_run_id("r-20261128")
    with pytest.raises(UnknownRun, match="no run"):
        store.resolve_run_id("r-1999")
    # LIKE wildcards in the input are literal characters, not patterns.
    with pytest.raises(UnknownRun, match="no run"):
        store.resolve_run_id("r-2026112_-1")


def test_a_launch_request_is_recorded_before_any_machine_exists(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create_run("r-1", provider="local", suite="smoke", name=None, spec={})
    row = store.record_launch_request("r-1", "local", {"count": 1})
    [machine] = store.machines("r-1", live_only=True)
    assert (machine.row_id, machine.machine_id, machine.state) == (row, None, "requested")
    store.end_request(row, "failed")  # the launch created nothing
    assert store.machines("r-1", live_only=True) == []


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    sql(Store(tmp_path), "PRAGMA user_version=99")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(tmp_path)


def test_a_version_1_store_is_migrated_in_place_and_keeps_its_runs(tmp_path: Path) -> None:
    v1_schema = store_module._SCHEMA.replace(",\n    orchestrator_pid INTEGER,\n    orchestrator_host TEXT", "")
    v1_schema = v1_schema.replace(",\n    utilisation_json TEXT", "").replace(",\n    host TEXT", "")
    assert "orchestrator_pid" not in v1_schema and "utilisation_json" not in v1_schema
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.executescript(v1_schema + "PRAGMA user_version=1;")
        db.execute("INSERT INTO runs (id, state, provider, suite, spec_json, created_at) "
                   "VALUES ('r-old', 'succeeded', 'local', 'smoke', '{}', '2026-01-01')")
    store = Store(tmp_path)
    assert sql(store, "PRAGMA user_version")[0][0] == store_module.SCHEMA_VERSION
    assert store.get_run("r-old").state == "succeeded"
    store.finish_run("r-old", state="succeeded", duration_s=1.0, error=None, log_tail=None, costs=[],
                     results={"m": {**_doc("r-old", []), "utilisation": [{"t": 0.0, "gpu": 0, "util_pct": 50}]}})
    assert "util_pct" in sql(store, "SELECT utilisation_json FROM runs")[0][0]
    assert not store.get_run("r-old").abandoned  # no orchestrator recorded (before schema 4): cannot tell


def test_a_run_whose_orchestrator_process_is_gone_is_abandoned(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create_run("r-live", provider="local", suite="smoke", name=None, spec={})
    assert not store.get_run("r-live").abandoned  # this process runs it

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.create_run("r-dead", provider="local", suite="smoke", name=None, spec={})
    sql(store, "UPDATE runs SET orchestrator_pid = ? WHERE id = 'r-dead'", [int(gone.stdout)])
    assert store.get_run("r-dead").abandoned

    # A live process that started after the run was created is a reused pid, not the run's orchestrator.
    store.create_run("r-reused", provider="local", suite="smoke", name=None, spec={})
    sql(store, "UPDATE runs SET created_at = '2000-01-01T00:00:00+00:00' WHERE id = 'r-reused'")
    assert store.get_run("r-reused").abandoned

    store.create_run("r-elsewhere", provider="local", suite="smoke", name=None, spec={})
    sql(store, "UPDATE runs SET orchestrator_pid = ?, orchestrator_host = 'another-box' WHERE id = 'r-elsewhere'",
        [int(gone.stdout)])
    assert not store.get_run("r-elsewhere").abandoned  # another machine's process: cannot tell

    store.finish_run("r-dead", state="failed", duration_s=1.0, error="x", log_tail=None, results=None, costs=[])
    assert not store.get_run("r-dead").abandoned  # finished runs are never abandoned


def test_a_lease_is_held_while_its_run_goes_on_and_never_taken_from_an_abandoned_run(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for run_id in ("r-1", "r-2", "r-3"):
        store.create_run(run_id, provider="rented", suite="smoke", name=None, spec={})
    assert store.acquire_lease("box", "r-1") is None
    holder = store.acquire_lease("box", "r-2")
    assert holder is not None and (holder.run_id, holder.state) == ("r-1", LeaseState.ACTIVE)
    # r-1's orchestrator died without releasing: the box is not taken over (its payload may still run there).
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    sql(store, "UPDATE leases SET holder_pid = ? WHERE run_id = 'r-1'", [int(gone.stdout)])
    sql(store, "UPDATE runs SET orchestrator_pid = ? WHERE id = 'r-1'", [int(gone.stdout)])
    holder = store.acquire_lease("box", "r-2")
    assert holder is not None and holder.state == LeaseState.ABANDONED
    # r-1 ended with its machine on the box not cleaned up: still held (LEFT) until `down`.
    row = store.record_launch_request("r-1", "rented", {})
    sql(store, "UPDATE machines SET machine_id = 'box', state = 'cleanup_failed' WHERE row_id = ?", [row])
    store.finish_run("r-1", state="failed", duration_s=1.0, error="x", log_tail=None, results=None, costs=[])
    holder = store.acquire_lease("box", "r-2")
    assert holder is not None and holder.state == LeaseState.LEFT
    # Once its machine there is gone, the stale lease is taken over.
    store.mark_machines("r-1", ["box"], "terminated")
    assert store.acquire_lease("box", "r-2") is None
    assert store.leases() == {"box": "r-2"}
    store.release_lease("box", "r-1")  # not r-1's any more: nothing changes
    assert store.leases() == {"box": "r-2"}
    store.release_lease("box", "r-2")
    assert store.leases() == {}


def test_a_version_4_store_keeps_its_machines_and_costs_per_machine(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.executescript(store_module._SCHEMA + store_module._DOCUMENTS_AND_LEASES + "PRAGMA user_version=4;")
        db.execute("INSERT INTO runs (id, state, provider, suite, spec_json, created_at) "
                   "VALUES ('r-old', 'succeeded', 'rented', 'smoke', '{}', '2026-01-01T00:00:00+00:00')")
        extra = {"workdir": "orchestrate/runs/r-old", "port": "2222", "user": "u", "host_key": "SHA256:abc",
                 "key_path": "/k", "prepare": "image", "python": "python3", "workdir_base": "orchestrate",
                 "price_per_hour": "3.600000"}
        db.execute("INSERT INTO machines (run_id, provider, machine_id, state, address, request_json, extra_json, "
                   "requested_at, launched_at) VALUES ('r-old', 'rented', 'box0', 'running', '10.0.0.1', '{}', ?, "
                   "'2026-01-01T00:00:00+00:00', '2026-01-01T00:00:01+00:00')", (json.dumps(extra),))
        db.execute("INSERT INTO costs VALUES ('r-old', 'compute', 10, 10, 3.6, 0.01, 'per_second')")
    store = Store(tmp_path)
    [row] = store.machines("r-old")
    assert row.machine is not None and row.machine.run_dir == "orchestrate/runs/r-old"
    assert (row.machine.access.host, row.machine.access.port, row.machine.access.host_key) == (
        "10.0.0.1", 2222, "SHA256:abc")
    assert row.machine.placement.price_per_hour == 3.6
    assert store.costs("r-old")[0].machine_id == "box0"
    assert store.get_run("r-old").cost_usd == 0.01


def test_many_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Every process imports first, then opens the store at the same instant.
    opener = (
        "import sys, time; from pathlib import Path; from orchestrator.store import Store\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); Store(Path(sys.argv[1]))"
    )
    start_at = str(time.time() + 2.0)
    processes = [
        subprocess.Popen([sys.executable, "-c", opener, str(tmp_path / "home"), start_at]) for _ in range(8)
    ]
    assert [p.wait(timeout=60) for p in processes] == [0] * 8
    assert sql(Store(tmp_path / "home"), "PRAGMA journal_mode")[0][0] == "wal"


def test_a_version_5_store_gains_the_logs_table_and_keeps_its_runs(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.executescript(store_module._SCHEMA + store_module._DOCUMENTS_AND_LEASES + store_module._V5
                         + "PRAGMA user_version=5;")
        db.execute("INSERT INTO runs (id, state, provider, suite, spec_json, created_at, error, log_tail) VALUES "
                   "('r-old', 'failed', 'local', 'smoke', '{}', '2026-01-01T00:00:00+00:00', 'boom', 'last words\n')")
    store = Store(tmp_path)
    assert sql(store, "PRAGMA user_version")[0][0] == store_module.SCHEMA_VERSION == 7
    old = store.get_run("r-old")
    assert (old.state, old.error, old.log_tail) == ("failed", "boom", "last words\n")
    assert store.logs("r-old") == []
    # A run recorded before whole logs were kept still shows what it kept: its last lines, saying so.
    [note, text] = list(api.logs("r-old", home=tmp_path))
    assert isinstance(note, api.LogNote) and "last lines" in note.text
    assert text == api.LogText("", "last words\n")
    store.record_logs("r-old", [LogRow("localhost", "whole log\n", 0)])
    assert store.logs("r-old") == [LogRow("localhost", "whole log\n", 0)]
    assert sql(store, "SELECT COUNT(*) FROM campaigns")[0][0] == 0  # version 7: campaigns
    store.close()
    assert Store(tmp_path).logs("r-old") == [LogRow("localhost", "whole log\n", 0)]  # reopening migrates nothing


def _line(machine_id: str, component: str, amount: float, *, billed_seconds: float = 60.0) -> CostLine:
    return CostLine(component=component, seconds=billed_seconds, billed_seconds=billed_seconds,
                    price_per_hour=amount * 3600.0 / billed_seconds, amount_usd=amount, rule="per_second",
                    machine_id=machine_id)


def _launched(store: Store, run_id: str, machine_id: str, instance_type: str, *, attempt: int = 1) -> None:
    row = store.record_launch_request(run_id, "aws", {}, attempt=attempt)
    store.record_machines(row, [Machine(
        run_id=run_id, id=machine_id, provider="aws", placement=Placement(provider="aws", instance_type=instance_type),
        access=Access(), environment=Environment(), run_dir="runs", launched_at=datetime.now(UTC))])


def test_cost_lines_come_back_typed_and_a_machine_priced_again_replaces_only_its_own_lines(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store.create_run("r-1", provider="aws", suite="smoke", name=None, spec={})
        lines = [_line("i-a", "setup", 0.25), _line("i-a", "compute", 0.5), _line("i-b", "compute", 1.0)]
        store.finish_run("r-1", state="succeeded", duration_s=1.0, error=None, log_tail=None, results=None,
                         costs=lines)
        assert store.costs("r-1") == lines
        store.record_costs("r-1", [_line("i-b", "teardown", 2.0)])  # `down` prices i-b again
        assert [(line.machine_id, line.component) for line in store.costs("r-1")] == [
            ("i-a", "setup"), ("i-a", "compute"), ("i-b", "teardown")]
        assert store.get_run("r-1").cost_usd == pytest.approx(2.75)


def test_a_run_is_found_by_id_or_is_none_and_its_state_reads_alone(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        assert store.find_run("r-none") is None and store.run_state("r-none") is None
        store.create_run("r-1", provider="local", suite="smoke", name="first", spec={})
        assert store.run_state("r-1") == "provisioning"
        store.finish_run("r-1", state="failed", duration_s=2.5, error="boom", log_tail=None, results=None, costs=[])
        run = store.find_run("r-1")
        assert run is not None and (run.state, run.error, run.duration_s) == ("failed", "boom", 2.5)
        assert store.run_state("r-1") == "failed"


def test_a_report_reads_each_runs_facts_bills_evictions_and_gpus(tmp_path: Path) -> None:
    host = {"gpus": [{"name": "Tesla T4", "memory_mib": 15360}]}
    with Store(tmp_path) as store:
        store.create_run("r-1", provider="aws", suite="smoke", name="spot", spec={})
        _launched(store, "r-1", "i-gone", "p3.2xlarge")
        _launched(store, "r-1", "i-a", "g4dn.xlarge", attempt=2)
        store.mark_machines("r-1", ["i-gone"], "evicted")
        documents = {"i-a": {"host": host, "samples": []}, "i-b": {"host": {"gpus": []}, "samples": []}}
        store.finish_run("r-1", state="succeeded", duration_s=60.0, error=None, log_tail=None, results=documents,
                         costs=[_line("i-gone", "setup", 0.1), _line("i-gone", "compute", 0.2),
                                _line("i-a", "compute", 1.0, billed_seconds=3600.0)])
        store.create_run("r-2", provider="local", suite="smoke", name=None, spec={})  # never priced, no results
        assert store.run_facts(["r-2", "r-1", "r-unknown"]) == [
            RunFacts("r-1", "spot", "aws", "smoke", "succeeded", store.get_run("r-1").created_at, 60.0,
                     pytest.approx(1.3)),
            RunFacts("r-2", None, "local", "smoke", "provisioning", store.get_run("r-2").created_at, None, None)]
        assert sorted(store.machine_bills(["r-1", "r-2"]), key=lambda bill: bill.machine_id) == [
            MachineBill("r-1", "i-a", 1.0, 3600.0, "g4dn.xlarge", 1.0),
            MachineBill("r-1", "i-gone", pytest.approx(0.3), 120.0, "p3.2xlarge", pytest.approx(12.0))]
        assert store.evictions(["r-1", "r-2"]) == [Evictions("r-1", 1, pytest.approx(0.3))]
        assert store.run_gpu_models(["r-1", "r-2"]) == {"r-1": "Tesla T4", "r-2": None}
        assert store.host_gpu_models(["r-1"]) == {("r-1", "i-a"): "Tesla T4", ("r-1", "i-b"): None}
        assert store.machine_bills([]) == [] and store.evictions([]) == [] and store.run_facts([]) == []


def test_samples_are_read_packed_per_run_and_unpack_to_their_keys(tmp_path: Path) -> None:
    samples = [{"benchmark": "train", "metric": "accuracy", "value": 0.9, "unit": "fraction", "metadata": {"a": 1}},
               {"benchmark": "train", "metric": "loss", "value": 0.3, "unit": "", "metadata": {}}]
    with Store(tmp_path) as store:
        store.create_run("r-1", provider="rented", suite="smoke", name=None, spec={})
        store.finish_run("r-1", state="succeeded", duration_s=1.0, error=None, log_tail=None, costs=[],
                         results={"box 'o'": {"samples": samples}})
        [packed] = store.packed_samples(["r-1", "r-none"])
        assert (packed.run_id, packed.count, len(packed.ids.split(","))) == ("r-1", 2, 2)
        expected = [("box 'o'", "train", "accuracy", "fraction", '{"a": 1}'), ("box 'o'", "train", "loss", "", "{}")]
        keys = [unpack_key(text) for text in packed.texts.split(SAMPLE_SEPARATOR)]
        assert sorted(keys, key=str) == expected  # in SQLite's order: the ids say which is which
        assert [row.key() for row in store.sample_rows(["r-1"])] == expected  # by id
        assert store.sample_values(["r-1"]) == [0.9, 0.3]
    # A store written before samples kept their host packs a bare NULL; a host so named is quoted.
    assert unpack_key("NULL\x1fb\x1fm\x1fu\x1f{}") == (None, "b", "m", "u", "{}")
    assert unpack_key("'NULL'\x1fb\x1fm\x1fu\x1f{}") == ("NULL", "b", "m", "u", "{}")
    assert unpack_key("no separators") is None
