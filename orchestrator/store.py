"""The run store: SQLite in WAL mode at ``$ORCHESTRATE_HOME/state.db``; the only module that writes state.

Tables: runs, machines, events, samples, costs. Every write is one transaction, so a run is never
half-recorded: results are ingested with their samples and state in a single commit.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import StoreError, UnknownRun

SCHEMA_VERSION = 4
_DOCUMENTS_AND_LEASES = """
CREATE TABLE IF NOT EXISTS documents (
    run_id TEXT NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    host_json TEXT,
    software_json TEXT,
    timings_json TEXT,
    errors_json TEXT,
    utilisation_json TEXT,
    PRIMARY KEY (run_id, host)
);
CREATE TABLE IF NOT EXISTS leases (
    host TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    holder_pid INTEGER NOT NULL,
    acquired_at TEXT NOT NULL
);
"""
# What each schema version adds to the one before; a store is brought up to date when opened.
_MIGRATIONS = {
    2: "ALTER TABLE runs ADD COLUMN utilisation_json TEXT;",
    3: "ALTER TABLE samples ADD COLUMN host TEXT;" + _DOCUMENTS_AND_LEASES,
    4: "ALTER TABLE runs ADD COLUMN orchestrator_pid INTEGER; ALTER TABLE runs ADD COLUMN orchestrator_host TEXT;",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    provider TEXT NOT NULL,
    suite TEXT NOT NULL,
    name TEXT,
    spec_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    duration_s REAL,
    error TEXT,
    log_tail TEXT,
    host_json TEXT,
    software_json TEXT,
    timings_json TEXT,
    results_errors_json TEXT,
    utilisation_json TEXT,
    orchestrator_pid INTEGER,
    orchestrator_host TEXT
);
CREATE TABLE IF NOT EXISTS machines (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    provider TEXT NOT NULL,
    machine_id TEXT,
    state TEXT NOT NULL,
    address TEXT,
    request_json TEXT NOT NULL,
    extra_json TEXT,
    requested_at TEXT NOT NULL,
    launched_at TEXT,
    terminated_at TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    step TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    benchmark TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    metadata_json TEXT NOT NULL,
    host TEXT
);
CREATE TABLE IF NOT EXISTS costs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    component TEXT NOT NULL,
    seconds REAL NOT NULL,
    billed_seconds REAL NOT NULL,
    price_per_hour REAL NOT NULL,
    amount_usd REAL NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (run_id, component)
);
CREATE INDEX IF NOT EXISTS events_by_run ON events(run_id);
CREATE INDEX IF NOT EXISTS samples_by_run ON samples(run_id);
CREATE INDEX IF NOT EXISTS machines_by_run ON machines(run_id);
"""

FINAL_STATES = ("succeeded", "failed", "interrupted")


def process_alive(pid: int, *, started_by: datetime | None = None) -> bool:
    """Returns whether process ``pid`` exists (and, with ``started_by``, had started by then).

    A pid is reused once its process is gone; a process that started after ``started_by`` is another one. Its
    start time comes from ``/proc`` where there is one; elsewhere only existence is checked.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if started_by is None:
        return True
    started = _process_start(pid)
    return started is None or started <= started_by.timestamp() + 1.0  # ticks are coarse: a second of slack


def _process_start(pid: int) -> float | None:
    """Returns when a process started (seconds since the epoch), from /proc; None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, counted after the ")" of comm
        return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _orchestrator_gone(pid: int | None, host: str | None, created_at: str) -> bool:
    """True when the run's orchestrator ran on this machine and its process is no longer there."""
    if pid is None or host != socket.gethostname():
        return False  # recorded before schema 4, or run from another machine: cannot tell
    try:
        created = datetime.fromisoformat(created_at)
    except ValueError:
        created = None
    return not process_alive(int(pid), started_by=created)


def now() -> datetime:
    """Returns the current time in UTC (the store keeps ISO-8601 UTC strings)."""
    return datetime.now(UTC)


def default_home() -> Path:
    """Returns ``$ORCHESTRATE_HOME``, or ``~/.orchestrate``."""
    return Path(os.environ.get("ORCHESTRATE_HOME") or Path.home() / ".orchestrate")


@dataclass(frozen=True)
class RunRow:
    """One run as the store holds it."""

    id: str
    state: str
    provider: str
    suite: str
    name: str | None
    created_at: str
    finished_at: str | None
    duration_s: float | None
    error: str | None
    log_tail: str | None
    cost_usd: float | None
    spec: dict[str, Any]
    # Not finished, yet the orchestrator process that ran it (on this machine) is gone: it died, or was killed.
    # Its machines may still be up: `orchestrate down RUN` tears them down.
    abandoned: bool = False


@dataclass(frozen=True)
class EventRow:
    """One lifecycle step of a run."""

    step: str
    started_at: str
    ended_at: str | None
    outcome: str | None
    detail: str | None


@dataclass(frozen=True)
class MachineRow:
    """One machine requested for a run, and what became of it."""

    row_id: int
    run_id: str
    provider: str
    machine_id: str | None
    state: str
    address: str | None
    extra: dict[str, str]


class Store:
    """The SQLite run registry.

    Args:
        home: the Orchestrate home directory; the database is ``home / "state.db"``.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "state.db"
        try:
            home.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._enable_wal()
            self._create_or_migrate()
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the run store at {self.path}: {error}") from error

    def _enable_wal(self, wait_s: float = 10.0) -> None:
        # Switching a new database to WAL takes an exclusive lock and does not wait on the busy handler, so
        # two processes opening a new store at once retry here, bounded.
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _create_or_migrate(self) -> None:
        """Brings the schema up to date in one write transaction (other openers wait on its lock)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store at {self.path} has schema version {version}; this Orchestrate knows "
                    f"{SCHEMA_VERSION}",
                    hint="upgrade Orchestrate",
                )
            # A new store gets the current schema; an older one its migrations, in order.
            scripts = [_SCHEMA + _DOCUMENTS_AND_LEASES] if version == 0 else [
                _MIGRATIONS[target] for target in range(version + 1, SCHEMA_VERSION + 1)
            ]
            for script in scripts:
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Closes the database connection."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            raise StoreError(f"run store write failed at {self.path}: {error}") from error

    # runs ------------------------------------------------------------------------------------------

    def create_run(self, run_id: str, *, provider: str, suite: str, name: str | None, spec: dict[str, Any]) -> None:
        """Records a new run in state ``provisioning``, with the process and machine that runs it."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO runs (id, state, provider, suite, name, spec_json, created_at, orchestrator_pid, "
                "orchestrator_host) VALUES (?,?,?,?,?,?,?,?,?)",
                (run_id, "provisioning", provider, suite, name, json.dumps(spec), now().isoformat(), os.getpid(),
                 socket.gethostname()),
            )

    def set_state(self, run_id: str, state: str) -> None:
        """Moves a run to a new (non-final) state."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET state=? WHERE id=?", (state, run_id))

    def finish_run(
        self,
        run_id: str,
        *,
        state: str,
        duration_s: float,
        error: str | None,
        log_tail: str | None,
        results: Mapping[str, dict[str, Any]] | None,
        costs: Sequence[dict[str, Any]],
    ) -> None:
        """Records a run's end in one transaction: final state, results (samples and facts) and costs.

        Args:
            results: validated results documents by host (the machine each came from), or None. The run row
                keeps the first document's facts; every document's facts and samples are kept by host.
            costs: rows with component, seconds, billed_seconds, price_per_hour, amount_usd, rule.
        """
        if state not in FINAL_STATES:
            raise ValueError(f"final state expected, received {state!r}")
        documents = list((results or {}).items())
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET state=?, finished_at=?, duration_s=?, error=?, log_tail=? WHERE id=?",
                (state, now().isoformat(), duration_s, error, log_tail, run_id),
            )
            for position, (host, document) in enumerate(documents):
                facts = [json.dumps(document.get(key)) for key in ("host", "software", "timings")]
                facts += [json.dumps(document.get("errors", [])), json.dumps(document.get("utilisation", []))]
                if position == 0:
                    db.execute(
                        "UPDATE runs SET host_json=?, software_json=?, timings_json=?, results_errors_json=?, "
                        "utilisation_json=? WHERE id=?",
                        (*facts, run_id),
                    )
                db.execute(
                    "INSERT OR REPLACE INTO documents (run_id, host, host_json, software_json, timings_json, "
                    "errors_json, utilisation_json) VALUES (?,?,?,?,?,?,?)",
                    (run_id, host, *facts),
                )
                db.executemany(
                    "INSERT INTO samples (run_id, host, benchmark, metric, value, unit, metadata_json) "
                    "VALUES (?,?,?,?,?,?,?)",
                    [
                        (
                            run_id,
                            host,
                            s["benchmark"],
                            s["metric"],
                            float(s["value"]),
                            s["unit"],
                            json.dumps(s.get("metadata", {}), sort_keys=True),
                        )
                        for s in document["samples"]
                    ],
                )
            db.executemany(
                "INSERT OR REPLACE INTO costs (run_id, component, seconds, billed_seconds, price_per_hour, "
                "amount_usd, rule) VALUES (:run_id, :component, :seconds, :billed_seconds, :price_per_hour, "
                ":amount_usd, :rule)",
                [{**row, "run_id": run_id} for row in costs],
            )

    def resolve_run_id(self, prefix: str) -> str:
        """Returns the one run id that starts with ``prefix``.

        Raises:
            UnknownRun: no run, or several runs, match.
        """
        rows = self._db.execute(
            "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at",
            (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        ).fetchall()
        ids = [str(r["id"]) for r in rows]
        if prefix in ids:
            return prefix
        if not ids:
            raise UnknownRun(f"no run with id {prefix!r}", hint="`orchestrate status` lists the runs")
        if len(ids) > 1:
            raise UnknownRun(f"run id {prefix!r} matches {len(ids)} runs", hint="give more of the id")
        return ids[0]

    def _run_rows(self, where: str, args: Sequence[Any]) -> list[RunRow]:
        rows = self._db.execute(
            "SELECT r.*, (SELECT SUM(amount_usd) FROM costs c WHERE c.run_id = r.id) AS cost_usd "
            f"FROM runs r {where}",
            args,
        ).fetchall()
        return [
            RunRow(
                id=r["id"],
                state=r["state"],
                provider=r["provider"],
                suite=r["suite"],
                name=r["name"],
                created_at=r["created_at"],
                finished_at=r["finished_at"],
                duration_s=r["duration_s"],
                error=r["error"],
                log_tail=r["log_tail"],
                cost_usd=r["cost_usd"],
                spec=json.loads(r["spec_json"]),
                abandoned=r["state"] not in FINAL_STATES and _orchestrator_gone(
                    r["orchestrator_pid"], r["orchestrator_host"], r["created_at"]),
            )
            for r in rows
        ]

    def get_run(self, run_id: str) -> RunRow:
        """Returns one run by its full id.

        Raises:
            UnknownRun: the store has no such run.
        """
        rows = self._run_rows("WHERE r.id = ?", (run_id,))
        if not rows:
            raise UnknownRun(f"no run with id {run_id!r}", hint="`orchestrate status` lists the runs")
        return rows[0]

    def list_runs(self, *, last: int | None = None) -> list[RunRow]:
        """Returns runs, newest last; only the newest ``last`` when given."""
        if last is None:
            return self._run_rows("ORDER BY r.created_at, r.id", ())
        rows = self._run_rows("ORDER BY r.created_at DESC, r.id DESC LIMIT ?", (last,))
        return list(reversed(rows))

    # events ----------------------------------------------------------------------------------------

    def start_event(self, run_id: str, step: str) -> int:
        """Records the start of a lifecycle step and returns its event id."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO events (run_id, step, started_at) VALUES (?,?,?)", (run_id, step, now().isoformat())
            )
            return int(cursor.lastrowid or 0)

    def end_event(self, event_id: int, outcome: str, detail: str | None = None) -> None:
        """Records how a lifecycle step ended: ok, failed, interrupted or skipped."""
        with self._transaction() as db:
            db.execute(
                "UPDATE events SET ended_at=?, outcome=?, detail=? WHERE id=?",
                (now().isoformat(), outcome, detail, event_id),
            )

    def events(self, run_id: str) -> list[EventRow]:
        """Returns a run's events in order."""
        rows = self._db.execute(
            "SELECT step, started_at, ended_at, outcome, detail FROM events WHERE run_id=? ORDER BY id", (run_id,)
        ).fetchall()
        return [EventRow(**dict(r)) for r in rows]

    # machines --------------------------------------------------------------------------------------

    def record_launch_request(self, run_id: str, provider: str, request: dict[str, Any]) -> int:
        """Records that machines are about to be requested, before the provider is called."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO machines (run_id, provider, state, request_json, requested_at) VALUES (?,?,?,?,?)",
                (run_id, provider, "requested", json.dumps(request), now().isoformat()),
            )
            return int(cursor.lastrowid or 0)

    def record_machine(
        self, row_id: int, *, machine_id: str, address: str, launched_at: datetime, extra: dict[str, str]
    ) -> int:
        """Fills in a requested machine row (or adds a sibling row for the second machine onward)."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM machines WHERE row_id=?", (row_id,)).fetchone()
            if row["machine_id"] is None:
                db.execute(
                    "UPDATE machines SET machine_id=?, address=?, state='running', launched_at=?, extra_json=? "
                    "WHERE row_id=?",
                    (machine_id, address, launched_at.isoformat(), json.dumps(extra), row_id),
                )
                return row_id
            cursor = db.execute(
                "INSERT INTO machines (run_id, provider, machine_id, state, address, request_json, extra_json, "
                "requested_at, launched_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    row["run_id"],
                    row["provider"],
                    machine_id,
                    "running",
                    address,
                    row["request_json"],
                    json.dumps(extra),
                    row["requested_at"],
                    launched_at.isoformat(),
                ),
            )
            return int(cursor.lastrowid or 0)

    def mark_terminated(self, run_id: str) -> None:
        """Records that every machine of a run is gone."""
        with self._transaction() as db:
            db.execute(
                "UPDATE machines SET state='terminated', terminated_at=? WHERE run_id=? AND terminated_at IS NULL",
                (now().isoformat(), run_id),
            )

    def machines(self, run_id: str | None = None, *, live_only: bool = False) -> list[MachineRow]:
        """Returns machine rows of one run or all runs; ``live_only`` skips terminated ones."""
        clauses, args = [], []
        if run_id is not None:
            clauses.append("run_id = ?")
            args.append(run_id)
        if live_only:
            clauses.append("terminated_at IS NULL")
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._db.execute(f"SELECT * FROM machines {where} ORDER BY row_id", args).fetchall()
        return [
            MachineRow(
                row_id=r["row_id"],
                run_id=r["run_id"],
                provider=r["provider"],
                machine_id=r["machine_id"],
                state=r["state"],
                address=r["address"],
                extra=json.loads(r["extra_json"] or "{}"),
            )
            for r in rows
        ]

    # leases ----------------------------------------------------------------------------------------

    def acquire_lease(self, host: str, run_id: str, *, holder_pid: int, alive: Callable[[int], bool]) -> str | None:
        """Takes the lease on a host for a run, atomically.

        A lease whose run has ended, or whose holding process is gone, is stale and is taken over.

        Returns:
            None when the lease is now this run's; otherwise the id of the run that holds it.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT l.run_id, l.holder_pid, r.state FROM leases l LEFT JOIN runs r ON r.id = l.run_id "
                "WHERE l.host = ?",
                (host,),
            ).fetchone()
            held_by_another = row is not None and row["run_id"] != run_id
            if held_by_another and row["state"] not in FINAL_STATES and alive(int(row["holder_pid"])):
                return str(row["run_id"])
            db.execute(
                "INSERT OR REPLACE INTO leases (host, run_id, holder_pid, acquired_at) VALUES (?,?,?,?)",
                (host, run_id, holder_pid, now().isoformat()),
            )
            return None

    def release_lease(self, host: str, run_id: str) -> None:
        """Gives a host's lease back, if this run holds it."""
        with self._transaction() as db:
            db.execute("DELETE FROM leases WHERE host = ? AND run_id = ?", (host, run_id))

    def leases(self) -> dict[str, str]:
        """Returns the held leases: host → run id."""
        return {r["host"]: r["run_id"] for r in self._db.execute("SELECT host, run_id FROM leases").fetchall()}

    # reading for reports ---------------------------------------------------------------------------

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Runs a read-only query (for the report's frame builder)."""
        return list(self._db.execute(sql, args).fetchall())
