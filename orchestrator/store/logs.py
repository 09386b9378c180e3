"""Logs: each machine's payload log as a run's collect step kept it (its last bytes, and how many were left out)."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.store.connection import StoreConnection
from orchestrator.store.rows import LogRow, log_row


class LogStore(StoreConnection):
    """The ``logs`` table."""

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
        return [log_row(r) for r in rows]
