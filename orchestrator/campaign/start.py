"""Starting a campaign: recorded new with its cells, or the unfinished one of the sweep's name taken over to resume,
and which of its cells this session runs (:mod:`.runner` runs them)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.campaign.matrix import Matrix, SweepSpec
from orchestrator.errors import SpecError
from orchestrator.store import Store
from orchestrator.store.campaigns import CampaignBook, CellRow, NewCell


def new_campaign_id() -> str:
    """A sortable, unique campaign id such as ``c-20261130-151002-3fa9``."""
    return f"c-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class CampaignStart:
    """What ``orchestrate sweep`` starts from: the campaign as recorded and the cells this session runs."""

    campaign_id: str
    name: str
    to_run: list[CellRow]
    budget_usd: float | None
    parallel: int
    resumed: bool = False
    notes: list[str] = field(default_factory=list)


def _new_cells(matrix: Matrix) -> list[NewCell]:
    return [NewCell(p.cell.id, position, p.cell.where, p.cell.values, p.cell.spec.model_dump(mode="json"),
                    p.duration_s, p.cost_usd) for position, p in enumerate(matrix.cells)]


def begin(store: Store, *, sweep_file: Path, sweep: SweepSpec, matrix: Matrix, resume: bool,
          retry_failed: bool) -> CampaignStart:
    """Records a new campaign, or takes over the unfinished one of the sweep's name (``resume``), and says which
    cells to run: every cell of a new one; on resume, those that did not finish (and failed ones with
    ``retry_failed``), once each cell left running by the dead orchestrator is settled (see
    :func:`orchestrator.campaign.runner.recover`).

    Raises:
        SpecError: ``resume`` with no unfinished campaign of that name, or with its orchestrator still running.
    """
    book = CampaignBook(store)
    cells = _new_cells(matrix)
    sweep_json = sweep.model_dump(mode="json")
    previous = book.unfinished(sweep.name, with_failed=resume and retry_failed)
    notes: list[str] = []
    if not resume:
        if previous is not None and previous.abandoned:
            notes.append(f"campaign {previous.name} ({previous.id}) did not finish: `orchestrate sweep "
                         f"{sweep_file} --resume` continues it; this starts a new one")
        campaign_id = new_campaign_id()
        book.create(campaign_id, name=sweep.name, file=str(sweep_file.resolve()), sweep=sweep_json,
                    budget_usd=matrix.budget_usd, parallel=matrix.parallel, cells=cells)
        return CampaignStart(campaign_id, sweep.name, book.cells(campaign_id), matrix.budget_usd, matrix.parallel,
                             notes=notes)
    if previous is None:
        raise SpecError("--resume", sweep.name, "the name of a campaign that did not complete" + (
            " or has failed cells" if retry_failed else "") + " (none of that name is: run it without --resume)")
    if previous.state == "running" and not previous.abandoned:
        raise SpecError("--resume", previous.id, "a campaign whose orchestrator is gone (this one is still "
                        "running: stop it with Ctrl-C where it runs)")
    book.reopen(previous.id, sweep=sweep_json, budget_usd=matrix.budget_usd, parallel=matrix.parallel, cells=cells)
    wanted = {c.cell_id for c in cells}
    again = ("pending", "running", "interrupted", "skipped", *(("failed",) if retry_failed else ()))
    to_run = [c for c in book.cells(previous.id) if c.cell_id in wanted and c.state in again]
    return CampaignStart(previous.id, sweep.name, to_run, matrix.budget_usd, matrix.parallel, resumed=True,
                         notes=notes)
