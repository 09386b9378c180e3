"""Running a campaign: each cell one run in a process of its own (``orchestrate run -f CELL.yaml``), ``parallel`` at
once, under the budget, recorded cell by cell so that ``--resume`` continues it.

Why processes: a run arms SIGINT/SIGTERM for its teardown (only a main thread can), keeps its own provider clients
and SSH sessions, and must tear down even when the campaign's orchestrator is killed — each cell's run watches its
parent and interrupts itself (tearing down) when the campaign's process is gone.

The loop, every ``poll_s``: reap cells whose process ended (state from the store's run row); stop every running cell
when what is spent, billed so far included, reaches the budget; start the next cells that fit: a free lane, their
rented box not held by another cell of the campaign (cells on one box queue on it), and the budget: what finished
runs cost, plus each running cell's estimate (or its billed cost so far, when more), plus the cell's estimate, is at
most the budget. A cell that does not fit waits for running cells to finish (they may cost less than estimated);
when nothing runs and it still does not fit, it is left out (``skipped``) and the campaign goes on.

What is recorded when a campaign starts or is taken over to resume, and which cells it runs: :mod:`.start`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType

import yaml

from orchestrator import api
from orchestrator.campaign.matrix import check_cell_params, load_sweep, plan_matrix
from orchestrator.campaign.progress import CampaignOutcome, CampaignReporter, CellView, Progress
from orchestrator.campaign.start import begin
from orchestrator.cost import billing_rule
from orchestrator.errors import OrchestrateError
from orchestrator.report.labels import swept_labels
from orchestrator.store import FINAL_STATES, Store, now
from orchestrator.store.campaigns import CampaignBook, CellRow

# Seconds a cell's machines are billed after its run is told to stop (payload stopped, results collected, machine
# released or terminated), by provider: the budget guard stops running cells this much (and one poll) before the
# budget would be reached.
TEARDOWN_ESTIMATE_S = {"local": 2.0, "rented": 5.0}
CLOUD_TEARDOWN_ESTIMATE_S = 60.0
RECOVER_WAIT_S = 900.0  # --resume: how long to wait for a cell's run that is still tearing down
FINISHED_CELL_STATES = ("succeeded", "failed", "interrupted", "skipped")  # a cell in one changes only when run again


def _run_id() -> str:
    # The lifecycle's imports (0.1-0.25 s) are paid only once a cell starts: `orchestrate campaign list` and
    # `campaign status` import this module to read progress, and never start a run.
    from orchestrator.lifecycle import new_run_id

    return new_run_id()


@dataclass
class _Child:
    cell: CellRow
    run_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float  # clock
    provider: str


def spawn_cell(spec_path: Path, run_id: str, log_path: Path) -> subprocess.Popen[bytes]:
    """Starts one cell's run: ``orchestrate run -f CELL.yaml`` in a session of its own (a Ctrl-C at the terminal
    reaches only the campaign, which passes it on), watching this process so that it tears down if we die."""
    command = [sys.executable, "-m", "orchestrator", "run", "-f", str(spec_path), "--quiet", "--run-id", run_id,
               "--watch-parent", str(os.getpid())]
    with log_path.open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def run_cost_usd(store: Store, run_id: str, *, ahead_s: float = 0.0) -> float:
    """What a run has cost: as priced once it has finished; while it runs, each machine's billed time so far (its
    billing rule's minimum and rounding applied), ``ahead_s`` seconds from now."""
    state = store.run_state(run_id)
    if state is None:
        return 0.0
    if state in FINAL_STATES:
        return sum(line.amount_usd for line in store.costs(run_id))
    at = now()
    total = 0.0
    for row in store.machines(run_id):
        if row.machine is None:
            continue
        end = datetime.fromisoformat(row.terminated_at) if row.terminated_at else at
        used = (end - row.machine.launched_at).total_seconds() + (0.0 if row.terminated_at else ahead_s)
        placement = row.machine.placement
        total += billing_rule(placement.billing_rule).billed_seconds(used) / 3600.0 * placement.price_per_hour
    return total


def _machine_text(store: Store, run_id: str) -> str | None:
    ids = [row.machine_id for row in store.machines(run_id) if row.machine_id]
    return ", ".join(dict.fromkeys(ids)) or None


def _last_error(log_path: Path) -> str | None:
    """The cell process's own error line (``error: …``), from the end of its log."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [line.removeprefix("error: ").strip() for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else (lines[-1].strip() if lines else None)


def _values_text(values: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


class CampaignRunner:
    """Runs the campaign's cells that are still to run; use :meth:`run`.

    Args:
        home: the Orchestrate home (cell files and logs go to ``home/campaigns/<id>/``).
        store: the open store.
        campaign_id: the campaign, recorded with its cells.
        name: its name.
        to_run: the cells to run, in order.
        parallel: cells at once.
        budget_usd: the most the campaign may spend (None: no limit).
        reporter: the display.
        spawn: starts a cell's process (injectable for tests).
        clock, sleep, poll_s: the loop's time (injectable).
    """

    def __init__(self, *, home: Path, store: Store, campaign_id: str, name: str, to_run: list[CellRow],
                 parallel: int, budget_usd: float | None, reporter: CampaignReporter,
                 spawn: Callable[[Path, str, Path], subprocess.Popen[bytes]] = spawn_cell,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 poll_s: float = 0.5) -> None:
        self.home, self.store, self.book = home, store, CampaignBook(store)
        self.campaign_id, self.name = campaign_id, name
        self.pending = list(to_run)
        self.parallel, self.budget = parallel, budget_usd
        self.reporter, self.spawn = reporter, spawn
        self.clock, self.sleep, self.poll_s = clock, sleep, poll_s
        self.running: dict[str, _Child] = {}
        self.stopped_by: str | None = None
        self.signals = 0
        self.directory = home / "campaigns" / campaign_id
        self._final_cost: dict[str, float] = {}
        self._finished: dict[tuple[str, int, str], CellView] = {}  # by (cell, attempts, state): views that stay
        self._swept: dict[str, str] | None = None  # cell id → what varies (the campaign's cells do not change)

    # the loop --------------------------------------------------------------------------------------

    def run(self) -> CampaignOutcome:
        """Runs every cell to run, then records how the campaign ended."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            with self._signals():
                while self.pending or self.running:
                    self._reap()
                    if self.stopped_by is None:
                        self._guard_budget()
                    if self.stopped_by is None:
                        self._start_more()
                        if not self.running and self.pending:
                            self._leave_out_rest()
                    if self.stopped_by is not None and not self.running:
                        break
                    if self.reporter.redraws:  # a view per poll only for a display that redraws it
                        self.reporter.update(self.progress())
                    if self.pending or self.running:
                        self.sleep(self.poll_s)
        except _LeaveNow:
            self.reporter.note(f"leaving {len(self.running)} cell(s) to finish their teardown on their own; "
                               f"`orchestrate sweep FILE --resume` waits for them")
        finally:
            self._stop_children_left()
        if self.stopped_by == "budget":
            for cell in self.pending:
                self.book.end_cell(self.campaign_id, cell.cell_id, "skipped",
                                   f"left out: the budget (${self.budget:g}) stopped the campaign")
            self.pending.clear()
        state = "interrupted" if self.stopped_by is not None else "completed"
        self.book.finish(self.campaign_id, state)
        progress = self.progress()
        if self.reporter.redraws:
            self.reporter.update(progress)
        counts: dict[str, int] = {}
        for view in progress.cells:
            counts[view.state] = counts.get(view.state, 0) + 1
        return CampaignOutcome(self.campaign_id, self.name, state, counts, progress.spent_usd, self.stopped_by)

    def _start_more(self) -> None:
        busy = {host for child in self.running.values() for host in (child.cell.spec["machine"].get("hosts") or [])}
        for cell in list(self.pending):
            if len(self.running) >= self.parallel:
                return
            hosts = cell.spec["machine"].get("hosts") or []
            if busy.intersection(hosts):
                continue  # queued on its box, held by another cell of the campaign
            if self.budget is not None and self.committed_usd() + cell.estimated_usd > self.budget + 1e-9:
                continue  # waits for running cells to finish; left out if it still does not fit
            self._start(cell)
            self.pending.remove(cell)
            busy.update(hosts)

    def _start(self, cell: CellRow) -> None:
        run_id = _run_id()
        spec_path = self.directory / f"{cell.cell_id}.yaml"
        spec_path.write_text(yaml.safe_dump(cell.spec, sort_keys=False))
        log_path = self.directory / f"{cell.cell_id}-{cell.attempts + 1}.log"
        self.book.start_cell(self.campaign_id, cell.cell_id, run_id)  # recorded before the process exists
        process = self.spawn(spec_path, run_id, log_path)
        self.running[cell.cell_id] = _Child(cell, run_id, process, log_path, self.clock(),
                                            str(cell.spec.get("provider", "")))
        self.reporter.cell(self._view(self._cell(cell.cell_id)), self.progress())

    def _reap(self) -> None:
        for cell_id, child in list(self.running.items()):
            if child.process.poll() is None:
                continue
            del self.running[cell_id]
            state, error = self.settle(child.run_id, child.log_path, child.process.returncode)
            self.book.end_cell(self.campaign_id, cell_id, state, error)
            self.reporter.cell(self._view(self._cell(cell_id)), self.progress())

    def settle(self, run_id: str, log_path: Path | None, returncode: int | None) -> tuple[str, str | None]:
        """A cell's state from its run, once its process is gone; a run left unfinished is torn down first."""
        run = self.store.find_run(run_id)
        if run is None:  # the process ended before it recorded the run (bad input, a crash at start)
            why = _last_error(log_path) if log_path is not None else None
            return "failed", why or f"the cell's process exited with {returncode} before its run started"
        if run.state not in FINAL_STATES:
            return self._clean_up(run_id)
        return run.state, run.error

    def _clean_up(self, run_id: str) -> tuple[str, str | None]:
        """Tears down what a cell's run left when its process died without finishing it (`orchestrate down`)."""
        results = api.down([run_id], home=self.home)
        failed = {m: why for result in results for m, why in result.failed.items()}
        if failed:
            text = "; ".join(f"{m}: {why}" for m, why in failed.items())
            self.reporter.note(f"cell run {run_id}: not cleaned up: {text} (retry: orchestrate down {run_id})")
            return "failed", f"its run's machines could not be cleaned up: {text}"
        gone = sum(len(result.gone) for result in results)
        self.reporter.note(f"cell run {run_id} was left unfinished: {gone} machine(s) torn down")
        return "interrupted", "its run was left unfinished (its process died); torn down"

    def _leave_out_rest(self) -> None:
        """Nothing runs and no pending cell fits the budget: each is left out, with the figures that say why."""
        spent = self.committed_usd()
        for cell in self.pending:
            why = (f"left out by the budget: its estimate ${cell.estimated_usd:.4f} on top of ${spent:.4f} spent "
                   f"exceeds ${self.budget:g}")
            self.book.end_cell(self.campaign_id, cell.cell_id, "skipped", why)
            self.reporter.cell(self._view(self._cell(cell.cell_id)), self.progress())
        self.pending.clear()

    # money -----------------------------------------------------------------------------------------

    def _cost(self, run_id: str, ahead_s: float = 0.0) -> float:
        if run_id in self._final_cost:
            return self._final_cost[run_id]
        final = self.store.run_state(run_id) in FINAL_STATES  # read first: a cost read after it is final too
        cost = run_cost_usd(self.store, run_id, ahead_s=ahead_s)
        if final:
            self._final_cost[run_id] = cost
        return cost

    def spent_usd(self) -> float:
        """Every run of the campaign: as priced once finished, billed so far while running."""
        return sum(self._cost(run_id) for run_id in self.book.run_ids(self.campaign_id))

    def committed_usd(self, *, with_teardown: bool = False) -> float:
        """What the campaign has spent, each running cell counted at its estimate or at its billed cost so far when
        more (``with_teardown``: billed as if its teardown, :data:`TEARDOWN_ESTIMATE_S`, had happened too)."""
        running = {child.run_id: child for child in self.running.values()}
        total = 0.0
        for run_id in self.book.run_ids(self.campaign_id):
            child = running.get(run_id)
            if child is None or run_id in self._final_cost:
                total += self._cost(run_id)
                continue
            ahead_s = TEARDOWN_ESTIMATE_S.get(child.provider, CLOUD_TEARDOWN_ESTIMATE_S) + self.poll_s \
                if with_teardown else 0.0
            total += max(self._cost(run_id, ahead_s), child.cell.estimated_usd)
        return total

    def _guard_budget(self) -> None:
        """Stops every running cell once a cell has overrun its estimate so far that the campaign's cost, its
        teardown counted, would pass the budget (the cells started within it: estimates alone never stop them)."""
        if self.budget is None or not self.running:
            return
        if self.committed_usd(with_teardown=True) <= self.budget + 1e-9:
            return
        self.stopped_by = "budget"
        self.reporter.note(f"stopping {len(self.running)} running cell(s): the campaign's cost with their teardown "
                           f"would pass the ${self.budget:g} budget")
        for child in self.running.values():
            _signal(child.process, signal.SIGTERM)

    # signals ---------------------------------------------------------------------------------------

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM: no new cell starts, the running ones are interrupted (each tears down) and awaited; a
        second signal leaves them to finish their teardown on their own."""

        def handler(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            self.signals += 1
            if self.signals > 1:
                raise _LeaveNow()
            self.stopped_by = self.stopped_by or name
            self.reporter.note(f"{name}: no new cell starts; {len(self.running)} running cell(s) tear down "
                               f"(again to leave them to it)")
            for child in self.running.values():
                _signal(child.process, signal.SIGINT)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _stop_children_left(self) -> None:
        """Only on an unexpected error: each running cell is interrupted (its own process tears down)."""
        if self.signals > 1:
            return
        for child in self.running.values():
            _signal(child.process, signal.SIGTERM)

    # views -----------------------------------------------------------------------------------------

    def _cell(self, cell_id: str) -> CellRow:
        return next(c for c in self.book.cells(self.campaign_id) if c.cell_id == cell_id)

    def _swept_text(self, cell_id: str) -> str:
        if self._swept is None:
            cells = self.book.cells(self.campaign_id)
            self._swept = dict(zip([c.cell_id for c in cells], swept_labels([c.values for c in cells]), strict=True))
        return self._swept.get(cell_id, "")

    def _view(self, cell: CellRow, runs: list[str] | None = None) -> CellView:
        """A cell as the display shows it; a finished cell's view is computed once (it no longer changes)."""
        key = (cell.cell_id, cell.attempts, cell.state)
        if key in self._finished:
            return self._finished[key]
        view = self._compute_view(cell, runs)
        if cell.state in FINISHED_CELL_STATES and cell.cell_id not in self.running:
            self._finished[key] = view
        return view

    def _compute_view(self, cell: CellRow, runs: list[str] | None) -> CellView:
        view = CellView(cell.cell_id, cell.where, _values_text(cell.values), cell.state,
                        self._swept_text(cell.cell_id), cell.run_id, attempts=cell.attempts,
                        estimated_usd=cell.estimated_usd, error=cell.error)
        child = self.running.get(cell.cell_id)
        if cell.run_id is not None:
            view.machine = _machine_text(self.store, cell.run_id)
            runs = runs if runs is not None else self.book.runs_by_cell(self.campaign_id).get(cell.cell_id, [])
            view.cost_usd = sum(self._cost(run_id) for run_id in runs)  # every attempt's
            if child is not None:
                view.elapsed_s = self.clock() - child.started
            else:
                run = self.store.find_run(cell.run_id)
                view.elapsed_s = run.duration_s if run is not None else None
        return view

    def progress(self) -> Progress:
        """The campaign's cells as they stand, for the display."""
        runs = self.book.runs_by_cell(self.campaign_id)
        views = [self._view(cell, runs.get(cell.cell_id, [])) for cell in self.book.cells(self.campaign_id)]
        return Progress(self.campaign_id, self.name, views, self.spent_usd(), self.budget, self.parallel)


class _LeaveNow(BaseException):
    """A second signal: stop waiting for the running cells."""


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError):
        process.send_signal(signum)


# resuming -------------------------------------------------------------------------------------------


def recover(runner: CampaignRunner, *, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> None:
    """Settles the cells a dead orchestrator left running, before they are run again: a run still going on (its own
    process is tearing it down) is waited for; a run left unfinished is torn down (`orchestrate down`); a finished
    run gives the cell its state (a succeeded or failed cell is then not run again)."""
    for cell in [c for c in runner.pending if c.state == "running" and c.run_id]:
        assert cell.run_id is not None
        deadline = clock() + RECOVER_WAIT_S
        said = False
        while (row := runner.store.find_run(cell.run_id)) is not None and row.state not in FINAL_STATES \
                and not row.abandoned:
            if not said:
                runner.reporter.note(f"cell {cell.cell_id}: its run {cell.run_id} is still tearing down; waiting")
                said = True
            if clock() > deadline:
                raise OrchestrateError(f"cell {cell.cell_id}: its run {cell.run_id} did not finish in "
                                       f"{RECOVER_WAIT_S:.0f} s", hint=f"orchestrate down {cell.run_id}")
            sleep(0.5)
        # No run recorded: its process died before anything was launched.
        state, error = ("pending", None) if row is None else runner.settle(cell.run_id, None, None)
        runner.book.end_cell(runner.campaign_id, cell.cell_id, state, error)
        if state in ("succeeded", "failed"):
            runner.pending = [c for c in runner.pending if c.cell_id != cell.cell_id]
    fresh = {c.cell_id: c for c in runner.book.cells(runner.campaign_id)}
    runner.pending = [fresh[c.cell_id] for c in runner.pending]


def run_campaign(sweep_file: Path, *, home: Path, reporter: CampaignReporter, budget_usd: float | None = None,
                 parallel: int | None = None, resume: bool = False, retry_failed: bool = False,
                 spawn: Callable[[Path, str, Path], subprocess.Popen[bytes]] = spawn_cell,
                 poll_s: float = 0.5) -> CampaignOutcome:
    """Plans a sweep file (every cell checked before anything starts), records the campaign (or takes over the
    unfinished one of its name with ``resume``) and runs its cells.

    Raises:
        SpecError: the sweep file, a cell, ``--resume`` or ``--budget`` is invalid; nothing was recorded.
    """
    sweep = load_sweep(sweep_file)
    matrix = plan_matrix(sweep, home=home, budget_usd=budget_usd, parallel=parallel)
    check_cell_params(matrix)
    with Store(home) as store:
        start = begin(store, sweep_file=sweep_file, sweep=sweep, matrix=matrix, resume=resume,
                      retry_failed=retry_failed)
        for text in [*start.notes, *matrix.warnings]:
            reporter.note(text)
        runner = CampaignRunner(home=home, store=store, campaign_id=start.campaign_id, name=start.name,
                                to_run=start.to_run, parallel=start.parallel, budget_usd=start.budget_usd,
                                reporter=reporter, spawn=spawn, poll_s=poll_s)
        if start.resumed:
            recover(runner)
        return runner.run()

