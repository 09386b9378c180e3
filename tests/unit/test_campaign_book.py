"""The store's campaign book: a campaign with its cells, each cell's runs, what they cost, and finding a campaign by
id prefix or name (LIKE's wildcards taken literally)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.cost import CostLine
from orchestrator.errors import SpecError
from orchestrator.store import SCHEMA_VERSION, Store
from orchestrator.store.campaigns import CampaignBook, NewCell


def _cells(*ids: str) -> list[NewCell]:
    return [NewCell(cell_id, position, "local", {"suite": "smoke", "epochs": position}, {"provider": "local"}, 10.0,
                    0.01) for position, cell_id in enumerate(ids)]


def _priced_run(store: Store, run_id: str, amount: float) -> None:
    store.create_run(run_id, provider="local", suite="smoke", name=None, spec={})
    store.finish_run(run_id, state="succeeded", duration_s=1.0, error=None, log_tail=None, results=None, costs=[
        CostLine(component="compute", seconds=1.0, billed_seconds=1.0, price_per_hour=amount * 3600, amount_usd=amount,
                 rule="per_second", machine_id="localhost")])


def test_a_campaign_keeps_its_cells_their_runs_and_what_they_cost(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        assert SCHEMA_VERSION == 7
        book = CampaignBook(store)
        book.create("c-1", name="grid", file="/x.yaml", sweep={"name": "grid"}, budget_usd=1.0, parallel=2,
                    cells=_cells("a", "b"))
        assert [(c.cell_id, c.state, c.attempts) for c in book.cells("c-1")] == [("a", "pending", 0),
                                                                                ("b", "pending", 0)]
        book.start_cell("c-1", "a", "r-1")
        _priced_run(store, "r-1", 0.25)
        book.end_cell("c-1", "a", "interrupted", "interrupted by SIGTERM")
        book.start_cell("c-1", "a", "r-2")  # a resumed cell runs again: both runs are the campaign's
        _priced_run(store, "r-2", 0.5)
        book.end_cell("c-1", "a", "succeeded")
        [a, b] = book.cells("c-1")
        assert (a.state, a.run_id, a.attempts, a.error) == ("succeeded", "r-2", 2, None)
        assert book.runs_by_cell("c-1") == {"a": ["r-1", "r-2"]}
        assert book.spent_usd("c-1") == pytest.approx(0.75)
        with pytest.raises(ValueError, match="cell state"):
            book.end_cell("c-1", "b", "done")


def test_a_campaign_is_found_by_id_prefix_or_newest_of_its_name_and_resumed_when_unfinished(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        book = CampaignBook(store)
        book.create("c-20261130-1", name="grid", file="/x", sweep={}, budget_usd=None, parallel=1, cells=[])
        book.finish("c-20261130-1", "completed")
        book.create("c-20261130-2", name="grid", file="/x", sweep={}, budget_usd=None, parallel=1, cells=[])
        assert book.get("grid").id == "c-20261130-2" and book.get("c-20261130-1").id == "c-20261130-1"
        with pytest.raises(SpecError, match="unique campaign id prefix"):
            book.get("c-2026")
        with pytest.raises(SpecError, match="received '%'"):
            book.get("%")  # not a wildcard
        # Held by this (live) process: running, not abandoned; once finished interrupted, it is the one to resume.
        assert book.unfinished("grid") is not None and not book.unfinished("grid").abandoned  # type: ignore[union-attr]
        book.finish("c-20261130-2", "interrupted")
        assert book.unfinished("grid").id == "c-20261130-2"  # type: ignore[union-attr]
        book.reopen("c-20261130-2", sweep={}, budget_usd=2.0, parallel=3, cells=_cells("a"))
        row = book.get("c-20261130-2")
        assert (row.state, row.budget_usd, row.parallel) == ("running", 2.0, 3)
        assert [c.cell_id for c in book.cells(row.id)] == ["a"]


def test_a_campaign_whose_orchestrator_died_is_abandoned(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        book = CampaignBook(store)
        book.create("c-9", name="dead", file="/x", sweep={}, budget_usd=None, parallel=1, cells=[])
        with store.transaction() as db:  # as if another process (gone now) had run it
            db.execute("UPDATE campaigns SET orchestrator_pid=? WHERE id='c-9'", (_gone_pid(),))
        assert book.get("dead").abandoned


def _gone_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
