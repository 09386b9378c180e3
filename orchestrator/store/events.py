"""Events: one row per lifecycle step of a run (start, end, outcome, detail), so ``status`` and the report can say
where time went."""

from __future__ import annotations

from orchestrator.store.connection import StoreConnection, now
from orchestrator.store.rows import EventRow, event_row


class EventStore(StoreConnection):
    """The ``events`` table."""

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
        return [event_row(r) for r in rows]
