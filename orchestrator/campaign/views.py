"""Reading campaigns back: the list, one campaign's cells as they stand, and its report's frames."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import api
from orchestrator.campaign.progress import CellView, Progress
from orchestrator.campaign.runner import CampaignRunner
from orchestrator.store import Store, default_home
from orchestrator.store.campaigns import CampaignBook, CampaignRow

# `orchestrate campaign list` and `campaign status` import this module: pandas and the report stack load only in
# campaign_report, so that they take 0.7 s (1.6 s with pandas).
if TYPE_CHECKING:
    import pandas as pd


class _Quiet:
    """A reporter that says nothing (reading a campaign's progress outside a run)."""

    redraws = False

    def update(self, progress: Progress) -> None:  # noqa: D102
        return None

    def cell(self, view: CellView, progress: Progress) -> None:  # noqa: D102
        return None

    def note(self, text: str) -> None:  # noqa: D102
        return None


def campaigns(*, home: Path | None = None) -> list[CampaignRow]:
    """Every recorded campaign, oldest first."""
    with Store(home or default_home()) as store:
        return CampaignBook(store).list()


def find_campaign(text: str, *, home: Path | None = None) -> CampaignRow:
    """A campaign by id (or unique prefix), or the newest of that name.

    Raises:
        SpecError: none matches.
    """
    with Store(home or default_home()) as store:
        return CampaignBook(store).get(text)


def campaign_progress(campaign_id: str, *, home: Path | None = None) -> Progress:
    """A campaign's cells as they stand (state, machine, elapsed, cost), read from the store."""
    home = home or default_home()
    with Store(home) as store:
        row = CampaignBook(store).get(campaign_id)
        runner = CampaignRunner(home=home, store=store, campaign_id=row.id, name=row.name, to_run=[],
                                parallel=row.parallel, budget_usd=row.budget_usd, reporter=_Quiet())
        return runner.progress()


def campaign_report(text: str, *, home: Path | None = None) -> tuple[CampaignRow, pd.DataFrame, pd.DataFrame,
                                                                     pd.DataFrame]:
    """A campaign's report: (the campaign, its frame — a row per cell and configuration —, the best configurations,
    the samples of its runs for the accuracy curves). See :mod:`orchestrator.report.campaign`.

    Raises:
        SpecError: no campaign matches ``text``.
    """
    import pandas as pd

    from orchestrator.report.campaign import best_configurations, campaign_frame

    home = home or default_home()
    row = find_campaign(text, home=home)
    progress = campaign_progress(row.id, home=home)
    with Store(home) as store:
        cells = CampaignBook(store).cells(row.id)
    by_id = {view.cell_id: view for view in progress.cells}
    frame = pd.DataFrame([{
        "campaign": row.name, "cell_id": c.cell_id, "position": c.position, "where": c.where,
        "provider": c.spec.get("provider"), "suite": str(c.values.get("suite", c.spec.get("suite"))),
        "state": c.state, "run_id": c.run_id, "cost_usd": by_id[c.cell_id].cost_usd, "error": c.error,
        "values": by_id[c.cell_id].values, "swept": by_id[c.cell_id].swept} for c in cells])
    run_ids = [c.run_id for c in cells if c.run_id is not None]
    if run_ids:
        samples, summary = api.report_frames_derived(run_ids, home=home, view="summary")
    else:
        samples, summary = pd.DataFrame(), pd.DataFrame(columns=["run_id"])
    joined = campaign_frame(frame, summary)
    return row, joined, best_configurations(joined), samples
