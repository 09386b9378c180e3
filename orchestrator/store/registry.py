"""The run registry: SQLite in WAL mode at ``$ORCHESTRATE_HOME/state.db``; the only module that writes state.

Tables: runs, machines, events, samples, costs (one line per machine and component), documents, leases and
logs (each machine's payload log).
Every write is one transaction, so a run is never half-recorded: results are ingested with their samples and
state in a single commit. Use it as a context manager (``with Store(home) as store: …``).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.errors import StoreError, UnknownRun
from orchestrator.inputs import run_id_text
from orchestrator.machine import LeaseHolder, LeaseState, Machine
from orchestrator.store.schema import SCHEMA_VERSION, upgrade

FINAL_STATES = ("succeeded", "failed", "interrupted")
_T = TypeVar("_T")
# How long one statement waits on SQLite's busy handler for another process's lock.
BUSY_TIMEOUT_S = 10.0
# How long a write (or the store's opening) keeps trying for the write lock in all, across busy timeouts: twenty
# runs recording large results at once queue for tens of seconds, and a run's record must not be lost to that.
LOCK_WAIT_S = 300.0


def process_alive(pid: int, *, started_by: datetime | None = None) -> bool:
    """Returns whether process ``pid`` is running (and, with ``started_by``, had started by then).

    A pid is reused once its process is gone; a process that started after ``started_by`` is another one. A
    zombie (exited, not yet reaped) is not running.
    """
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
        # psutil lets FileNotFoundError through when the process is reaped between two reads of /proc/PID.
        return False
    except psutil.AccessDenied:
        return True  # exists, owned by another user
    # Start times are coarse (clock ticks): a second of slack.
    return started_by is None or started <= started_by.timestamp() + 1.0


def _orchestrator_gone(pid: int | None, host: str | None, created_at: str) -> bool:
    """True when the run's orchestrator ran on this machine and its process is no longer there."""
    if pid is None or host != socket.gethostname():
        return False  # recorded before schema 4, or run from another machine: cannot tell
    try:
        created = datetime.fromisoformat(created_at)
    except ValueError:
        created = None
    return not process_alive(int(pid), started_by=created)


def _busy(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused for a lock another connection holds (SQLITE_BUSY or SQLITE_LOCKED, any variant)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


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
    machine_id: str | None  # None: requested, and no machine came of it (yet)
    state: str  # requested, running, terminated, cleanup_failed, or failed (the launch created nothing)
    address: str | None
    attempt: int  # which placement of the run's plan (1 = the first tried)
    touched: bool  # the run made its directory there: clean-up must reach the machine
    launched_at: str | None
    terminated_at: str | None
    machine: Machine | None  # the whole machine as recorded (Machine.from_record)


@dataclass(frozen=True)
class LogRow:
    """One machine's payload log as the collect step kept it."""

    machine_id: str
    text: str
    truncated: int  # bytes of the log's start left out (0: the whole log)


def _lease_state(row: sqlite3.Row) -> LeaseState | None:
    """Why a lease's holder still holds it, or None when the lease is stale and may be taken over."""
    if row["state"] in FINAL_STATES:
        left = row["machine_state"] in ("running", "cleanup_failed", "requested")
        return LeaseState.LEFT if left else None
    if row["holder_host"] is not None and row["holder_host"] != socket.gethostname():
        return LeaseState.ACTIVE  # another machine's orchestrator: it cannot be checked from here
    try:
        created = datetime.fromisoformat(row["created_at"])
    except (TypeError, ValueError):
        created = None
    return LeaseState.ACTIVE if process_alive(int(row["holder_pid"]), started_by=created) else LeaseState.ABANDONED


class Store:
    """The SQLite run registry.

    Several processes share one store: readers never take the write lock (opening an up-to-date store only reads
    its version), and each write waits its turn for the lock for up to ``lock_wait_s`` in all.

    Args:
        home: the Orchestrate home directory; the database is ``home / "state.db"``.
        lock_wait_s: how long a write keeps trying for the write lock before it fails.
        clock: monotonic seconds (injected in tests).
        sleep: how to wait between tries (injected in tests).
    """

    def __init__(
        self,
        home: Path,
        *,
        lock_wait_s: float = LOCK_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.home = home
        self.path = home / "state.db"
        self.lock_wait_s = lock_wait_s
        self._clock = clock
        self._sleep = sleep
        busy_s = min(BUSY_TIMEOUT_S, lock_wait_s)
        try:
            home.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_s, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._enable_wal()
            self._create_or_migrate()
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the run store at {self.path}: {error}") from error

    def _patiently(self, work: Callable[[], _T], what: str) -> _T:
        """Runs ``work``, trying again while another process holds a lock it needs, for ``lock_wait_s`` in all.

        Raises:
            StoreError: the lock stayed taken past ``lock_wait_s`` (said in the user's words, with what to do).
        """
        deadline = self._clock() + self.lock_wait_s
        while True:
            try:
                return work()
            except sqlite3.OperationalError as error:
                if not _busy(error):
                    raise
                if self._clock() >= deadline:
                    raise StoreError(
                        f"{what}: the run store at {self.path} stayed busy with another process's write for "
                        f"{self.lock_wait_s:g} s",
                        hint="another `orchestrate` process is writing to it, or is stopped (Ctrl-Z) while writing: "
                             "let it finish, or end it",
                    ) from error
                self._sleep(0.05)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Runs a query and returns its rows; any SQLite error becomes a StoreError (one line, no traceback)."""
        try:
            return self._patiently(lambda: self._db.execute(sql, args).fetchall(), "reading the run store")
        except sqlite3.Error as error:
            raise StoreError(f"reading the run store at {self.path} failed: {error}") from error

    def _enable_wal(self) -> None:
        # Switching a new database to WAL takes an exclusive lock and does not wait on the busy handler, so
        # two processes opening a new store at once retry here, bounded.
        if self._read("PRAGMA journal_mode")[0][0] != "wal":
            self._patiently(lambda: self._db.execute("PRAGMA journal_mode=WAL"), "opening the run store")

    def _create_or_migrate(self) -> None:
        """Brings the schema up to date in one write transaction (other openers wait on its lock).

        A store already up to date is only read: a reader (``status``, ``report``) never queues for the write lock
        behind runs that are recording.
        """
        if self._schema_version() == SCHEMA_VERSION:
            return
        self._patiently(lambda: self._db.execute("BEGIN IMMEDIATE"), "opening the run store")
        try:
            version = self._schema_version()  # again, under the lock: another process may have migrated it
            if version < SCHEMA_VERSION:
                upgrade(self._db, version)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _schema_version(self) -> int:
        """The store's schema version.

        Raises:
            StoreError: the store is newer than this Orchestrate.
        """
        version = int(self._read("PRAGMA user_version")[0][0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store at {self.path} has schema version {version}; this Orchestrate knows {SCHEMA_VERSION}",
                hint="upgrade Orchestrate",
            )
        return version

    def close(self) -> None:
        """Closes the database connection."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # In WAL mode only taking the write lock waits on other processes: once BEGIN IMMEDIATE holds it, the
        # statements and the COMMIT do not, so the wait is retried here and the body runs once.
        try:
            self._patiently(lambda: self._db.execute("BEGIN IMMEDIATE"), "writing to the run store")
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
            costs: rows with machine_id, component, seconds, billed_seconds, price_per_hour, amount_usd, rule.
        """
        if state not in FINAL_STATES:
            raise ValueError(f"final state expected, received {state!r}")
        # Rows are made before the write lock is taken: the lock is held only for the inserts, so twenty runs
        # recording large results at once wait less on each other.
        facts: list[tuple[str, ...]] = []
        samples: list[tuple[Any, ...]] = []
        for host, document in (results or {}).items():
            facts.append((host, *(json.dumps(document.get(key)) for key in ("host", "software", "timings")),
                          json.dumps(document.get("errors", [])), json.dumps(document.get("utilisation", []))))
            samples += [(run_id, host, s["benchmark"], s["metric"], float(s["value"]), s["unit"],
                         json.dumps(s.get("metadata", {}), sort_keys=True)) for s in document["samples"]]
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET state=?, finished_at=?, duration_s=?, error=?, log_tail=? WHERE id=?",
                (state, now().isoformat(), duration_s, error, log_tail, run_id),
            )
            if facts:  # the run row keeps the first document's facts
                db.execute(
                    "UPDATE runs SET host_json=?, software_json=?, timings_json=?, results_errors_json=?, "
                    "utilisation_json=? WHERE id=?",
                    (*facts[0][1:], run_id),
                )
            db.executemany(
                "INSERT OR REPLACE INTO documents (run_id, host, host_json, software_json, timings_json, "
                "errors_json, utilisation_json) VALUES (?,?,?,?,?,?,?)",
                [(run_id, *row) for row in facts],
            )
            db.executemany(
                "INSERT INTO samples (run_id, host, benchmark, metric, value, unit, metadata_json) "
                "VALUES (?,?,?,?,?,?,?)",
                samples,
            )
            self._insert_costs(db, run_id, costs)

    def resolve_run_id(self, prefix: str) -> str:
        """Returns the one run id that starts with ``prefix``.

        Raises:
            SpecError: the text cannot be a run id (empty, too long, characters no run id has).
            UnknownRun: no run, or several runs, match.
        """
        run_id_text(prefix)
        rows = self._read(
            "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at",
            (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        )
        ids = [str(r["id"]) for r in rows]
        if prefix in ids:
            return prefix
        if not ids:
            raise UnknownRun(f"no run with id {prefix!r}", hint="`orchestrate status` lists the runs")
        if len(ids) > 1:
            raise UnknownRun(f"run id {prefix!r} matches {len(ids)} runs", hint="give more of the id")
        return ids[0]

    def _run_rows(self, where: str, args: Sequence[Any]) -> list[RunRow]:
        rows = self._read(
            "SELECT r.*, (SELECT SUM(amount_usd) FROM costs c WHERE c.run_id = r.id) AS cost_usd "
            f"FROM runs r {where}",
            args,
        )
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
        rows = self._read(
            "SELECT step, started_at, ended_at, outcome, detail FROM events WHERE run_id=? ORDER BY id", (run_id,)
        )
        return [EventRow(**dict(r)) for r in rows]

    # machines ------------------------------------------------------------------------------------------

    def record_launch_request(self, run_id: str, provider: str, request: dict[str, Any], *, attempt: int = 1) -> int:
        """Records that machines are about to be requested, before the provider is called; returns the row id."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO machines (run_id, provider, state, request_json, requested_at, attempt) "
                "VALUES (?,?,?,?,?,?)",
                (run_id, provider, "requested", json.dumps(request, default=str), now().isoformat(), attempt),
            )
            return int(cursor.lastrowid or 0)

    def record_machines(self, row_id: int, machines: Sequence[Machine]) -> None:
        """Fills in a requested row with the first machine and adds a sibling row for each further one.

        A machine already recorded for the run (found again by a sweep) is updated, not added twice.
        """
        with self._transaction() as db:
            row = db.execute("SELECT * FROM machines WHERE row_id=?", (row_id,)).fetchone()
            for machine in machines:
                values = (machine.id, machine.access.host, "running", machine.launched_at.isoformat(),
                          json.dumps(machine.to_record()))
                known = db.execute("SELECT row_id FROM machines WHERE run_id=? AND machine_id=?",
                                   (row["run_id"], machine.id)).fetchone()
                if known is not None:
                    db.execute("UPDATE machines SET machine_id=?, address=?, state=?, launched_at=?, record_json=? "
                               "WHERE row_id=?", (*values, known["row_id"]))
                elif db.execute("SELECT machine_id FROM machines WHERE row_id=?", (row_id,)).fetchone()[0] is None:
                    db.execute("UPDATE machines SET machine_id=?, address=?, state=?, launched_at=?, record_json=? "
                               "WHERE row_id=?", (*values, row_id))
                else:
                    db.execute(
                        "INSERT INTO machines (run_id, provider, machine_id, address, state, launched_at, record_json, "
                        "request_json, requested_at, attempt) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (row["run_id"], row["provider"], *values[:2], "running", values[3], values[4],
                         row["request_json"], row["requested_at"], row["attempt"]),
                    )

    def close_requests(self, run_id: str, provider: str) -> None:
        """Closes a run's request rows of a provider that no machine filled, once its sweep by tag has run."""
        with self._transaction() as db:
            db.execute("UPDATE machines SET state='failed', terminated_at=? WHERE run_id=? AND provider=? "
                       "AND machine_id IS NULL AND state='requested'", (now().isoformat(), run_id, provider))

    def end_request(self, row_id: int, state: str) -> None:
        """Closes a request row that no machine filled (the launch failed and the sweep found nothing)."""
        with self._transaction() as db:
            db.execute("UPDATE machines SET state=?, terminated_at=? WHERE row_id=? AND machine_id IS NULL",
                       (state, now().isoformat(), row_id))

    def update_machine(self, machine: Machine, *, touched: bool | None = None) -> None:
        """Rewrites a machine's record (a host key pinned at first use) and notes that the run touched it."""
        with self._transaction() as db:
            db.execute("UPDATE machines SET record_json=? WHERE run_id=? AND machine_id=?",
                       (json.dumps(machine.to_record()), machine.run_id, machine.id))
            if touched is not None:
                db.execute("UPDATE machines SET touched=? WHERE run_id=? AND machine_id=?",
                           (int(touched), machine.run_id, machine.id))

    def mark_machines(self, run_id: str, machine_ids: Sequence[str], state: str, *, at: datetime | None = None) -> None:
        """Records machines as ``terminated`` (gone) or ``cleanup_failed`` (may still be up)."""
        when = (at or now()).isoformat() if state == "terminated" else None
        with self._transaction() as db:
            db.executemany(
                "UPDATE machines SET state=?, terminated_at=? WHERE run_id=? AND machine_id=?",
                [(state, when, run_id, machine_id) for machine_id in machine_ids],
            )

    def machines(self, run_id: str | None = None, *, live_only: bool = False) -> list[MachineRow]:
        """Returns machine rows of one run or all runs; ``live_only`` keeps those not known to be gone."""
        clauses, args = [], []
        if run_id is not None:
            clauses.append("run_id = ?")
            args.append(run_id)
        if live_only:
            clauses.append("state IN ('requested', 'running', 'cleanup_failed')")
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._read(f"SELECT * FROM machines {where} ORDER BY row_id", args)
        return [
            MachineRow(
                row_id=r["row_id"],
                run_id=r["run_id"],
                provider=r["provider"],
                machine_id=r["machine_id"],
                state=r["state"],
                address=r["address"],
                attempt=r["attempt"],
                touched=bool(r["touched"]),
                launched_at=r["launched_at"],
                terminated_at=r["terminated_at"],
                machine=Machine.from_record(json.loads(r["record_json"])) if r["record_json"] else None,
            )
            for r in rows
        ]

    # costs -----------------------------------------------------------------------------------------

    def record_costs(self, run_id: str, costs: Sequence[dict[str, Any]]) -> None:
        """Replaces the cost lines of the machines named in ``costs`` (rows as :meth:`finish_run` takes them)."""
        with self._transaction() as db:
            db.executemany("DELETE FROM costs WHERE run_id=? AND machine_id=?",
                           [(run_id, m) for m in {row["machine_id"] for row in costs}])
            self._insert_costs(db, run_id, costs)

    @staticmethod
    def _insert_costs(db: sqlite3.Connection, run_id: str, costs: Sequence[dict[str, Any]]) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO costs (run_id, machine_id, component, seconds, billed_seconds, price_per_hour, "
            "amount_usd, rule) VALUES (:run_id, :machine_id, :component, :seconds, :billed_seconds, "
            ":price_per_hour, :amount_usd, :rule)",
            [{"machine_id": "", **row, "run_id": run_id} for row in costs],
        )

    def costs(self, run_id: str) -> list[dict[str, Any]]:
        """Returns a run's cost lines, per machine and component."""
        rows = self._read("SELECT * FROM costs WHERE run_id=? ORDER BY machine_id, rowid", (run_id,))
        return [dict(r) for r in rows]

    # logs ------------------------------------------------------------------------------------------

    def record_logs(self, run_id: str, logs: Sequence[LogRow]) -> None:
        """Keeps machines' payload logs (replacing what the run kept for those machines before)."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO logs (run_id, machine_id, text, truncated) VALUES (?,?,?,?)",
                [(run_id, log.machine_id, log.text, log.truncated) for log in logs],
            )

    def logs(self, run_id: str) -> list[LogRow]:
        """Returns the payload logs the run kept, one per machine, in the order its machines were recorded."""
        rows = self._read(
            "SELECT machine_id, text, truncated FROM logs l WHERE run_id=? ORDER BY (SELECT MIN(m.row_id) FROM "
            "machines m WHERE m.run_id = l.run_id AND m.machine_id = l.machine_id), machine_id", (run_id,),
        )
        return [LogRow(r["machine_id"], r["text"], int(r["truncated"])) for r in rows]

    # leases ----------------------------------------------------------------------------------------

    def acquire_lease(self, host: str, run_id: str) -> LeaseHolder | None:
        """Takes the lease on a box for a run, atomically, with this process as its holder.

        A lease is taken over only when nothing of its run can be left on the box: the run is unknown, or it ended
        and its machine there is gone. A run still going on holds it (ACTIVE); a run whose orchestrator died holds
        it (ABANDONED) until ``orchestrate down``; so does a run that ended without cleaning the box (LEFT).

        Returns:
            None when the lease is now this run's; otherwise the holder.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT l.run_id, l.holder_pid, l.holder_host, r.state, r.created_at, "
                "(SELECT m.state FROM machines m WHERE m.run_id = l.run_id AND m.machine_id = l.host "
                " ORDER BY m.row_id DESC LIMIT 1) AS machine_state "
                "FROM leases l LEFT JOIN runs r ON r.id = l.run_id WHERE l.host = ?",
                (host,),
            ).fetchone()
            if row is not None and row["run_id"] != run_id and row["state"] is not None:
                holder_state = _lease_state(row)
                if holder_state is not None:
                    return LeaseHolder(str(row["run_id"]), holder_state, int(row["holder_pid"]),
                                       str(row["holder_host"] or ""))
            db.execute(
                "INSERT OR REPLACE INTO leases (host, run_id, holder_pid, holder_host, acquired_at) VALUES (?,?,?,?,?)",
                (host, run_id, os.getpid(), socket.gethostname(), now().isoformat()),
            )
            return None

    def release_lease(self, host: str, run_id: str) -> None:
        """Gives a host's lease back, if this run holds it."""
        with self._transaction() as db:
            db.execute("DELETE FROM leases WHERE host = ? AND run_id = ?", (host, run_id))

    def leases(self) -> dict[str, str]:
        """Returns the held leases: host → run id."""
        return {r["host"]: r["run_id"] for r in self._read("SELECT host, run_id FROM leases")}

    # reading for reports ---------------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT, rolled back on any error) for the store's other books
        (:mod:`orchestrator.store.campaigns`)."""
        return self._transaction()

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Runs a read-only query (for the report's frame builder)."""
        return list(self._read(sql, args))


class StoreLeases:
    """The store as the rented provider's :class:`~orchestrator.machine.LeaseBook`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def acquire(self, box: str, run_id: str) -> LeaseHolder | None:
        """Takes the box for the run; None when taken, else its holder."""
        return self.store.acquire_lease(box, run_id)

    def release(self, box: str, run_id: str) -> None:
        """Gives the box back, if this run holds it."""
        self.store.release_lease(box, run_id)

    def held(self) -> dict[str, str]:
        """Box → run id."""
        return self.store.leases()
