"""Costs: a run's cost lines, one per machine and component (setup, compute, teardown), as
:func:`orchestrator.cost.price_machine` priced them; and what the report reads of them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from orchestrator.cost import CostLine
from orchestrator.store.connection import StoreConnection, in_marks
from orchestrator.store.rows import Evictions, MachineBill, cost_line, cost_params


def insert_costs(db: sqlite3.Connection, run_id: str, costs: Sequence[CostLine]) -> None:
    """Writes cost lines inside the caller's transaction (a line of the same machine and component is replaced)."""
    db.executemany(
        "INSERT OR REPLACE INTO costs (run_id, machine_id, component, seconds, billed_seconds, price_per_hour, "
        "amount_usd, rule) VALUES (?,?,?,?,?,?,?,?)",
        [cost_params(run_id, line) for line in costs],
    )


class CostStore(StoreConnection):
    """The ``costs`` table."""

    def record_costs(self, run_id: str, costs: Sequence[CostLine]) -> None:
        """Replaces the cost lines of the machines named in ``costs``."""
        with self._transaction() as db:
            db.executemany("DELETE FROM costs WHERE run_id=? AND machine_id=?",
                           [(run_id, m) for m in {line.machine_id for line in costs}])
            insert_costs(db, run_id, costs)

    def costs(self, run_id: str) -> list[CostLine]:
        """Returns a run's cost lines, per machine and component."""
        return [cost_line(r) for r in self._read("SELECT * FROM costs WHERE run_id=? ORDER BY machine_id, rowid",
                                                 (run_id,))]

    def machine_bills(self, run_ids: Sequence[str]) -> list[MachineBill]:
        """Returns what each machine of the runs was billed, one per run and machine (machines with costs only),
        with its instance type as its latest launch attempt recorded it."""
        if not run_ids:
            return []
        rows = self._read(
            "SELECT c.run_id, c.machine_id, SUM(c.amount_usd), SUM(c.billed_seconds), "
            "(SELECT json_extract(m.record_json, '$.placement.instance_type') FROM machines m "
            " WHERE m.run_id = c.run_id AND m.machine_id = c.machine_id ORDER BY m.attempt DESC LIMIT 1), "
            f"MAX(c.price_per_hour) FROM costs c WHERE c.run_id IN ({in_marks(run_ids)}) "
            "GROUP BY c.run_id, c.machine_id",
            list(run_ids),
        )
        return [MachineBill(*row) for row in rows]

    def evictions(self, run_ids: Sequence[str]) -> list[Evictions]:
        """Returns, for each of the runs that lost machines to spot evictions, how many and what they cost."""
        if not run_ids:
            return []
        rows = self._read(
            "SELECT m.run_id, COUNT(DISTINCT m.machine_id), COALESCE(SUM(c.amount_usd), 0) FROM machines m "
            "LEFT JOIN costs c ON c.run_id = m.run_id AND c.machine_id = m.machine_id "
            f"WHERE m.state = 'evicted' AND m.run_id IN ({in_marks(run_ids)}) GROUP BY m.run_id", list(run_ids))
        return [Evictions(row[0], int(row[1]), float(row[2])) for row in rows]
