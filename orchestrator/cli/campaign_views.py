"""How a campaign shows while it runs: a live rich table of its cells on a terminal, one line per cell event when the
output is a file or a pipe (CI logs stay readable)."""

from __future__ import annotations

from collections import Counter

from rich.live import Live
from rich.markup import escape
from rich.table import Table

from orchestrator.campaign.progress import CampaignOutcome, CellView, Progress
from orchestrator.cli.console import duration_text, err, money_text, out

CELL_STYLE = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "running": "cyan", "skipped": "dim",
              "pending": ""}


def budget_text(progress: Progress) -> str:
    """``spent $X of $B ($L left)`` or ``spent $X`` without a budget."""
    if progress.budget_usd is None:
        return f"spent ${progress.spent_usd:.4f} (no budget)"
    left = max(progress.budget_usd - progress.spent_usd, 0.0)
    return f"spent ${progress.spent_usd:.4f} of ${progress.budget_usd:g} (${left:.4f} left)"


def state_counts(progress: Progress) -> str:
    """How many cells are in each state, states in the order the cells first have them: ``2 succeeded, 1 running``."""
    return ", ".join(f"{n} {state}" for state, n in Counter(view.state for view in progress.cells).items())


def cells_table(progress: Progress, title: str | None = None) -> Table:
    """The cells as a table: state, machine, elapsed, cost so far; the caption has the budget left."""
    caption = f"{budget_text(progress)} · {state_counts(progress)}"
    table = Table(title=title or f"campaign {escape(progress.name)} ({progress.campaign_id}), --parallel "
                  f"{progress.parallel}", caption=escape(caption))
    for column in ("#", "swept", "where", "state", "machine", "elapsed", "cost", "est. $", "cell"):
        table.add_column(column, justify="right" if column in ("#", "elapsed", "cost", "est. $") else "left",
                         no_wrap=column == "swept")
    for index, view in enumerate(progress.cells, 1):
        style = CELL_STYLE.get(view.state, "")
        state = f"[{style}]{view.state}[/]" if style else view.state
        table.add_row(str(index), escape(view.swept or view.values), escape(view.where), state,
                      escape(view.machine or ""), duration_text(view.elapsed_s), money_text(view.cost_usd),
                      money_text(view.estimated_usd), view.cell_id)
    return table


def cell_line(view: CellView, progress: Progress) -> str:
    """One line for a cell event, what varies first: ``[3/12] lr 0.001 · dropout 0.25 on local (cell 1a2b3c4d5e):
    succeeded in 9.1s, $0.0003; spent …``."""
    done = sum(1 for v in progress.cells if v.state in ("succeeded", "failed", "skipped"))
    head = f"[{done}/{len(progress.cells)}] {view.swept or view.values} on {view.where} (cell {view.cell_id}): " \
           f"{view.state}"
    if view.state == "running":
        return f"{head} as {view.run_id}"
    if view.state == "skipped":
        return f"{head}: {view.error}"
    tail = f" in {duration_text(view.elapsed_s)}" if view.elapsed_s is not None else ""
    tail += f", {money_text(view.cost_usd)}" if view.cost_usd is not None else ""
    tail += f"; {budget_text(progress)}"
    return head + tail + (f": {view.error}" if view.error and view.state != "succeeded" else "")


class CampaignDisplay:
    """The CLI's :class:`~orchestrator.campaign.runner.CampaignReporter`.

    Args:
        live: redraw a table in place (a terminal); else print one line per cell event.
    """

    def __init__(self, live: bool) -> None:
        self._live: Live | None = None
        self.redraws = live

    def update(self, progress: Progress) -> None:  # noqa: D102
        if not self.redraws:
            return
        if self._live is None:
            self._live = Live(cells_table(progress), console=out, refresh_per_second=4, transient=False,
                              vertical_overflow="visible")
            self._live.start()
        self._live.update(cells_table(progress))

    def cell(self, view: CellView, progress: Progress) -> None:  # noqa: D102
        if self.redraws:
            self.update(progress)
        else:
            out.print(escape(cell_line(view, progress)))

    def note(self, text: str) -> None:  # noqa: D102
        console = self._live.console if self._live is not None else err
        console.print(f"[yellow]note[/] {escape(text)}")

    def close(self) -> None:
        """Stops redrawing (the last table stays on the screen)."""
        if self._live is not None:
            self._live.stop()
            self._live = None


def print_outcome(outcome: CampaignOutcome) -> None:
    """The campaign's end: cells by state, what it spent, and where its report is."""
    counts = ", ".join(f"{n} {state}" for state, n in outcome.counts.items())
    style = "green" if outcome.state == "completed" else "yellow"
    stopped = f" (stopped by {outcome.stopped_by})" if outcome.stopped_by else ""
    out.print(f"\ncampaign [bold]{escape(outcome.name)}[/] ({outcome.campaign_id}) [{style}]{outcome.state}[/]"
              f"{stopped}: {counts}; spent ${outcome.spent_usd:.4f}")
    if outcome.state == "interrupted":
        out.print("[dim]continue it: orchestrate sweep FILE --resume[/]")
    out.print(f"[dim]report: orchestrate campaign report {escape(outcome.name)} (--format html -o campaign.html)[/]")
