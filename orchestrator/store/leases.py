"""Leases: which run holds a rented box (or the dev box), taken in one transaction, with the holder's process and
host; and the store as the rented provider's :class:`~orchestrator.machine.LeaseBook`."""

from __future__ import annotations

import os
import socket
import sqlite3
from datetime import datetime

from orchestrator.machine import LeaseHolder, LeaseState
from orchestrator.store.connection import StoreConnection, now
from orchestrator.store.liveness import process_alive
from orchestrator.store.rows import FINAL_STATES


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


class LeaseStore(StoreConnection):
    """The ``leases`` table: one row per box held."""

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


class StoreLeases:
    """The store as the rented provider's :class:`~orchestrator.machine.LeaseBook`."""

    def __init__(self, store: LeaseStore) -> None:
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
