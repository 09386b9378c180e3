"""The store's connection: SQLite in WAL mode at ``home / "state.db"``, opened (and migrated) once, shared by several
processes.

Readers never take the write lock; a write (and the opening of a store that must be migrated) waits its turn for
it, trying again while another process holds it, for ``lock_wait_s`` in all. Every SQLite error becomes a
:class:`~orchestrator.errors.StoreError` (one line, no traceback).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from orchestrator.errors import StoreError
from orchestrator.store.schema import SCHEMA_VERSION, upgrade

_T = TypeVar("_T")
# How long one statement waits on SQLite's busy handler for another process's lock.
BUSY_TIMEOUT_S = 10.0
# How long a write (or the store's opening) keeps trying for the write lock in all, across busy timeouts: twenty
# runs recording large results at once queue for tens of seconds, and a run's record must not be lost to that.
LOCK_WAIT_S = 300.0


def now() -> datetime:
    """Returns the current time in UTC (the store keeps ISO-8601 UTC strings)."""
    return datetime.now(UTC)


def default_home() -> Path:
    """Returns ``$ORCHESTRATE_HOME``, or ``~/.orchestrate``."""
    return Path(os.environ.get("ORCHESTRATE_HOME") or Path.home() / ".orchestrate")


def in_marks(values: Sequence[Any]) -> str:
    """``?,?,…``: one parameter mark per value, for ``IN (…)``."""
    return ",".join("?" * len(values))


def like_prefix(text: str) -> str:
    """``text%`` for ``LIKE … ESCAPE '\\'``, with LIKE's own wildcards in ``text`` taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _busy(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused for a lock another connection holds (SQLITE_BUSY or SQLITE_LOCKED, any variant)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


class StoreConnection:
    """The open database that each part of the :class:`~orchestrator.store.Store` reads and writes through.

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
        """Runs a query and returns its rows; any SQLite error becomes a StoreError (one line, no traceback).

        For the store's own modules only: what callers read has a named method.
        """
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

    def __enter__(self) -> Self:
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

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT, rolled back on any error) for the store's other books
        (:mod:`orchestrator.store.campaigns`)."""
        return self._transaction()
