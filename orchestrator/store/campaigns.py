"""The store's campaign book: a campaign (``orchestrate sweep``), its cells and every run its cells made.

A cell's run id is written before the run's process starts (:meth:`CampaignBook.start_cell`), so a campaign
resumed after its orchestrator died finds each cell's run — finished, still tearing down, or abandoned — and
what it cost.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import SpecError
from orchestrator.store.connection import StoreConnection, like_prefix, now
from orchestrator.store.rows import CampaignRow as CampaignRow  # the campaign's rows, imported from here too
from orchestrator.store.rows import CellRow as CellRow
from orchestrator.store.rows import campaign_row, cell_row

CELL_STATES = ("pending", "running", "succeeded", "failed", "interrupted", "skipped")
CELL_DONE = ("succeeded", "failed")  # a resumed campaign does not run these again (failed: unless asked)


@dataclass(frozen=True)
class NewCell:
    """A cell as the campaign records it when it starts or resumes."""

    cell_id: str
    position: int  # order in the sweep file's expansion
    where: str
    values: dict[str, Any]  # the swept values (suite and each swept param)
    spec: dict[str, Any]  # the cell's run spec (JSON)
    estimated_s: float
    estimated_usd: float


class CampaignBook:
    """Campaign records in a :class:`Store` (schema version 7)."""

    def __init__(self, store: StoreConnection) -> None:
        self.store = store

    def create(self, campaign_id: str, *, name: str, file: str, sweep: dict[str, Any], budget_usd: float | None,
               parallel: int, cells: Sequence[NewCell]) -> None:
        """Records a new campaign (state running, held by this process) with its cells, all pending."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO campaigns (id, name, file, sweep_json, state, budget_usd, parallel, created_at, "
                "orchestrator_pid, orchestrator_host) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (campaign_id, name, file, json.dumps(sweep), "running", budget_usd, parallel, now().isoformat(),
                 os.getpid(), socket.gethostname()),
            )
            self._insert_cells(db, campaign_id, cells)

    @staticmethod
    def _insert_cells(db: sqlite3.Connection, campaign_id: str, cells: Sequence[NewCell]) -> None:
        db.executemany(
            "INSERT INTO campaign_cells (campaign_id, cell_id, position, where_text, values_json, spec_json, "
            "estimated_s, estimated_usd, state) VALUES (?,?,?,?,?,?,?,?,'pending') "
            "ON CONFLICT (campaign_id, cell_id) DO UPDATE SET position=excluded.position, "
            "where_text=excluded.where_text, values_json=excluded.values_json, spec_json=excluded.spec_json, "
            "estimated_s=excluded.estimated_s, estimated_usd=excluded.estimated_usd",
            [(campaign_id, c.cell_id, c.position, c.where, json.dumps(c.values, default=str), json.dumps(c.spec),
              c.estimated_s, c.estimated_usd) for c in cells],
        )

    def reopen(self, campaign_id: str, *, sweep: dict[str, Any], budget_usd: float | None, parallel: int,
               cells: Sequence[NewCell]) -> None:
        """Takes over a campaign to resume it: this process holds it, with the file's cells as they are now (a cell
        the file no longer has keeps its record, and is not run)."""
        with self.store.transaction() as db:
            db.execute(
                "UPDATE campaigns SET state='running', finished_at=NULL, sweep_json=?, budget_usd=?, parallel=?, "
                "orchestrator_pid=?, orchestrator_host=? WHERE id=?",
                (json.dumps(sweep), budget_usd, parallel, os.getpid(), socket.gethostname(), campaign_id),
            )
            self._insert_cells(db, campaign_id, cells)

    def finish(self, campaign_id: str, state: str) -> None:
        """Records how the campaign ended: completed (every cell ran or was left out) or interrupted."""
        with self.store.transaction() as db:
            db.execute("UPDATE campaigns SET state=?, finished_at=? WHERE id=?",
                       (state, now().isoformat(), campaign_id))

    # cells -----------------------------------------------------------------------------------------

    def start_cell(self, campaign_id: str, cell_id: str, run_id: str) -> None:
        """Records that a cell's run starts, with its id, before its process does."""
        with self.store.transaction() as db:
            db.execute(
                "UPDATE campaign_cells SET state='running', run_id=?, attempts=attempts+1, started_at=?, "
                "finished_at=NULL, error=NULL WHERE campaign_id=? AND cell_id=?",
                (run_id, now().isoformat(), campaign_id, cell_id),
            )
            db.execute("INSERT INTO campaign_runs (run_id, campaign_id, cell_id) VALUES (?,?,?)",
                       (run_id, campaign_id, cell_id))

    def end_cell(self, campaign_id: str, cell_id: str, state: str, error: str | None = None) -> None:
        """Records a cell's state: how its run ended, or pending / skipped (with why) when it did not run."""
        if state not in CELL_STATES:
            raise ValueError(f"cell state expected, received {state!r}")
        finished = now().isoformat() if state not in ("pending", "running") else None
        with self.store.transaction() as db:
            db.execute("UPDATE campaign_cells SET state=?, error=?, finished_at=? WHERE campaign_id=? AND cell_id=?",
                       (state, error, finished, campaign_id, cell_id))

    def cells(self, campaign_id: str) -> list[CellRow]:
        """The campaign's cells in the sweep file's order."""
        rows = self.store._read("SELECT * FROM campaign_cells WHERE campaign_id=? ORDER BY position, cell_id",
                                (campaign_id,))
        return [cell_row(r) for r in rows]

    def run_ids(self, campaign_id: str) -> list[str]:
        """Every run any attempt of the campaign's cells made, oldest first."""
        rows = self.store._read("SELECT run_id FROM campaign_runs WHERE campaign_id=? ORDER BY rowid", (campaign_id,))
        return [r["run_id"] for r in rows]

    def runs_by_cell(self, campaign_id: str) -> dict[str, list[str]]:
        """Each cell's runs (every attempt), oldest first."""
        by_cell: dict[str, list[str]] = {}
        for row in self.store._read("SELECT cell_id, run_id FROM campaign_runs WHERE campaign_id=? ORDER BY rowid",
                                    (campaign_id,)):
            by_cell.setdefault(row["cell_id"], []).append(row["run_id"])
        return by_cell

    def spent_usd(self, campaign_id: str) -> float:
        """What the campaign's finished runs cost, as priced (running runs are not priced yet)."""
        rows = self.store._read(
            "SELECT COALESCE(SUM(c.amount_usd), 0) AS total FROM costs c JOIN campaign_runs r ON r.run_id = c.run_id "
            "WHERE r.campaign_id=?", (campaign_id,))
        return float(rows[0]["total"])

    # campaigns -------------------------------------------------------------------------------------

    def _rows(self, where: str, args: Sequence[Any]) -> list[CampaignRow]:
        return [campaign_row(r) for r in self.store._read(f"SELECT * FROM campaigns {where}", args)]

    def list(self) -> list[CampaignRow]:
        """Every campaign, oldest first."""
        return self._rows("ORDER BY created_at, id", ())

    def get(self, text: str) -> CampaignRow:
        """A campaign by id (or a unique prefix of one), or the newest campaign of that name.

        Raises:
            SpecError: no campaign has that id or name.
        """
        by_id = self._rows("WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at", (like_prefix(text),))
        if len(by_id) == 1:
            return by_id[0]
        by_name = self._rows("WHERE name=? ORDER BY created_at DESC, id DESC LIMIT 1", (text,))
        if by_name:
            return by_name[0]
        known = sorted({c.name for c in self.list()})
        if len(by_id) > 1:
            raise SpecError("CAMPAIGN", text, "a unique campaign id prefix or name (it matches "
                            + ", ".join(c.id for c in by_id) + ")")
        raise SpecError("CAMPAIGN", text, "a campaign id or name: " + (", ".join(known) if known else
                                                                      "none recorded yet (orchestrate sweep FILE)"))

    def unfinished(self, name: str, *, with_failed: bool = False) -> CampaignRow | None:
        """The newest campaign of that name that did not complete (``with_failed``: or has a failed cell), if any."""
        failed = (" OR EXISTS (SELECT 1 FROM campaign_cells c WHERE c.campaign_id = campaigns.id AND "
                  "c.state = 'failed')") if with_failed else ""
        rows = self._rows(f"WHERE name=? AND (state != 'completed'{failed}) ORDER BY created_at DESC, id DESC LIMIT 1",
                          (name,))
        return rows[0] if rows else None

