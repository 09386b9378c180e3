"""Machines and launch requests: a request is recorded before the provider is called (so a crash after the call can
always be cleaned up), filled in with the machines that came of it, and closed when they are gone."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from orchestrator.machine import Machine
from orchestrator.store.connection import StoreConnection, now
from orchestrator.store.rows import MachineRow, machine_row


class MachineStore(StoreConnection):
    """The ``machines`` table: one row per machine requested for a run (per launch attempt)."""

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
        return [machine_row(r) for r in self._read(f"SELECT * FROM machines {where} ORDER BY row_id", args)]
