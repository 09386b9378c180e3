"""What a running campaign shows: each cell's view, the whole campaign's progress, the reporter that renders them
(:mod:`orchestrator.cli.campaign_views`), and how the campaign ended. Built by :mod:`.runner`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class CellView:
    """One cell as the progress display shows it."""

    cell_id: str
    where: str
    values: str  # the swept values, as text
    state: str
    swept: str = ""  # only what varies between the campaign's cells: "lr 0.001 · dropout 0.25" (labels.py)
    run_id: str | None = None
    machine: str | None = None  # the machine the latest run got (instance id, box, localhost)
    attempts: int = 0  # runs the cell has started (a resumed cell runs again)
    elapsed_s: float | None = None
    cost_usd: float | None = None  # every attempt's: billed so far (running) or priced (finished)
    estimated_usd: float = 0.0
    error: str | None = None


@dataclass
class Progress:
    """The campaign as it stands, for the display."""

    campaign_id: str
    name: str
    cells: list[CellView]
    spent_usd: float  # finished runs' cost plus running cells' billed cost so far
    budget_usd: float | None
    parallel: int


class CampaignReporter(Protocol):
    """How the runner tells the user what happens; the CLI renders it."""

    redraws: bool  # whether it shows the whole campaign (``update`` every poll); else only cell events and notes

    def update(self, progress: Progress) -> None:
        """The whole campaign, every poll (called only when the reporter ``redraws``)."""
        ...

    def cell(self, view: CellView, progress: Progress) -> None:
        """One cell started, ended, or was left out."""
        ...

    def note(self, text: str) -> None:
        """Something the user should read (a signal received, a run cleaned up on resume)."""
        ...


@dataclass
class CampaignOutcome:
    """How a campaign (or this session of it) ended."""

    campaign_id: str
    name: str
    state: str  # completed or interrupted
    counts: dict[str, int]  # cells by state
    spent_usd: float
    stopped_by: str | None = None  # SIGINT, SIGTERM, or "budget"
