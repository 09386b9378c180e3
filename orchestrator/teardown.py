"""The teardown nothing can skip, shared by a run's end and ``orchestrate down`` (STYLE 14).

For one run's machines: the remote clean-up on every machine the run touched (stop the payload, remove the run
directory), then each provider's ``terminate``, then the store records each machine as ``terminated`` or
``cleanup_failed``. Every exception is caught and kept per machine; nothing here raises for a machine's sake.
A provider whose machines outlive the run (:attr:`Capability.REUSED`: rented boxes, the dev box) does not get
back a machine whose clean-up failed — a payload may still run there — so its lease stays with the run and the
next run on it is refused with ``orchestrate down``. ``orchestrate down RUN --forget`` is the way out for a box that
will never be cleaned (rebuilt with another host key, or gone silent): the remote clean-up is given up, the lease is
released and the machine is recorded ``forgotten``, with an event that says so; a cloud machine is still terminated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.cost import CostLine, billing_rule, price_machine
from orchestrator.errors import OrchestrateError
from orchestrator.fanout import fan_out
from orchestrator.machine import Capability, Machine
from orchestrator.providers.base import Provider
from orchestrator.remote.connect import Connector
from orchestrator.remote.detached import DetachedProcess
from orchestrator.remote.session import RESULTS_FILE, clean_up
from orchestrator.remote.transport import Transport
from orchestrator.results import parse_results
from orchestrator.store import FINAL_STATES, LogRow, RunRow, Store, now

CLEANUP_CONNECT_S = 60.0


@dataclass
class TeardownResult:
    """What went away, and what could not be cleaned up (machine id → why)."""

    gone: list[Machine] = field(default_factory=list)
    gone_at: dict[str, datetime] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    forgotten: list[Machine] = field(default_factory=list)  # given back uncleaned (--forget): a reused box's run dir

    def describe(self) -> str:
        """One line for the teardown event."""
        parts = []
        if self.gone:
            parts.append("terminated " + ", ".join(m.id for m in self.gone))
        if self.forgotten:
            parts.append("forgotten " + ", ".join(m.id for m in self.forgotten))
        if self.failed:
            parts.append("cleanup_failed " + "; ".join(f"{m}: {why}" for m, why in self.failed.items()))
        return "; ".join(parts) or "nothing to tear down"


def tear_down(
    store: Store,
    run_id: str,
    machines: Sequence[Machine],
    *,
    touched: Iterable[str],
    providers: Callable[[str], Provider],
    provider_names: Iterable[str] = (),
    connect: Connector,
    home: Path,
    transports: dict[str, Transport] | None = None,
    forget: bool = False,
) -> TeardownResult:
    """Cleans up, terminates and records one run's machines; never raises for a machine's sake.

    Args:
        machines: the run's machines still up (as recorded, with the host keys the store pinned).
        touched: ids of the machines where the run made its directory (only those are cleaned up remotely: a
            machine the run never reached, e.g. refused for its host key, has nothing of the run on it).
        providers: a provider by name.
        provider_names: providers to sweep by tag even when no machine of theirs is known (a launch that died).
        connect: opens a transport to a machine (pinned host keys).
        transports: connections the run already has open, by machine id (closed here).
        forget: give up the remote clean-up (nothing connects): every machine goes back to its provider; a reused
            box the run touched is recorded ``forgotten`` (its run directory, maybe a payload, left on it), a cloud
            machine is terminated as usual.
    """
    result = TeardownResult()
    open_transports = dict(transports or {})
    touched_ids = set(touched)
    uncleaned = touched_ids if forget else set()
    if forget:
        touched_ids = set()

    def clean(machine: Machine) -> None:
        transport = open_transports.pop(machine.id, None) or connect(machine.access, home, CLEANUP_CONNECT_S)
        try:
            clean_up(transport, machine.run_dir)
        finally:
            transport.close()

    cleaned = fan_out([m for m in machines if m.id in touched_ids], clean, name=lambda m: m.id,
                      thread_name="cleanup")
    remote_failed = {machine.id: f"clean-up failed: {error}" for machine, error in cleaned.failed}
    for transport in open_transports.values():
        transport.close()
    by_provider: dict[str, list[Machine]] = {name: [] for name in provider_names}
    for machine in machines:
        by_provider.setdefault(machine.provider, []).append(machine)
    for name, group in by_provider.items():
        try:
            provider = providers(name)
            kept = [m for m in group if m.id in remote_failed] if Capability.REUSED in provider.capabilities else []
            going = [m for m in group if m not in kept]
            if going or not group:  # nothing known of this provider: sweep by tag
                provider.terminate(run_id, going)
            store.close_requests(run_id, name)  # a launch that died left nothing the sweep did not take
        except Exception as error:  # noqa: BLE001 - every failure is recorded; teardown goes on
            for machine in group:
                result.failed[machine.id] = remote_failed.get(machine.id) or f"terminate failed: {error!r}"[:500]
            continue
        at = now()
        reused = Capability.REUSED in provider.capabilities
        for machine in going:
            result.gone_at[machine.id] = at
            (result.forgotten if reused and machine.id in uncleaned else result.gone).append(machine)
        for machine in kept:
            result.failed[machine.id] = remote_failed[machine.id]
    store.mark_machines(run_id, [m.id for m in result.gone], "terminated", at=now())
    store.mark_machines(run_id, [m.id for m in result.forgotten], "forgotten")
    store.mark_machines(run_id, list(result.failed), "cleanup_failed")
    return result


def price_machines(
    machines: Sequence[Machine],
    *,
    gone_at: dict[str, datetime],
    execute_start: datetime | None,
    execute_end: datetime | None,
    until: datetime,
) -> list[CostLine]:
    """Cost lines for each machine, from its launch to its termination (or ``until``, while it is still up)."""
    rows: list[CostLine] = []
    for machine in machines:
        rows += price_machine(
            machine.id,
            launched_at=machine.launched_at,
            gone_at=gone_at.get(machine.id, until),
            execute_start=execute_start,
            execute_end=execute_end,
            price_per_hour=machine.placement.price_per_hour,
            rule=billing_rule(machine.placement.billing_rule),
        )
    return rows


@dataclass
class DownResult:
    """What ``orchestrate down`` did to one run."""

    run_id: str
    gone: list[str] = field(default_factory=list)  # machine ids
    failed: dict[str, str] = field(default_factory=dict)
    state: str | None = None  # the run's state afterwards (an abandoned run becomes interrupted)
    cost_usd: float | None = None
    forgotten: dict[str, str] = field(default_factory=dict)  # machine id → what was left on it (--forget)


def _execute_marks(store: Store, run_id: str) -> tuple[datetime | None, datetime | None]:
    """When the run's payload started and ended, from its execute event."""
    for event in store.events(run_id):
        if event.step == "execute":
            ended = datetime.fromisoformat(event.ended_at) if event.ended_at else None
            return datetime.fromisoformat(event.started_at), ended
    return None, None


@dataclass
class _Salvage:
    """What `down` kept of an abandoned run's machines before tearing them down."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # by machine id: documents of this run
    logs: list[LogRow] = field(default_factory=list)
    transports: dict[str, Transport] = field(default_factory=dict)  # reused by the teardown


def _salvaged(run_id: str, machines: Sequence[Machine], *, connect: Connector, home: Path) -> _Salvage:
    """Stops each machine's payload and fetches its log and results document (only one of this run), best effort:
    a machine that cannot be reached keeps nothing, and is torn down all the same."""
    kept = _Salvage()
    for machine in machines:
        try:
            transport = connect(machine.access, home, CLEANUP_CONNECT_S)
            kept.transports[machine.id] = transport
            process = DetachedProcess(transport, machine.run_dir)
            process.kill()
            collected = process.log_and_file(RESULTS_FILE)
            text, skipped = collected.kept_log()
            kept.logs.append(LogRow(machine.id, text, skipped))
            if collected.file is not None:
                document = parse_results(collected.file)
                if document.get("run_id") == run_id:
                    kept.results[machine.id] = document
        except Exception:  # noqa: BLE001 - keeping results is best effort; the teardown must go on
            continue
    return kept


def down_run(
    store: Store, run_id: str, *, providers: Callable[[str], Provider], connect: Connector, home: Path,
    extra: Sequence[Machine] = (), forget: bool = False,
) -> DownResult:
    """Tears down what a run left (after --keep, a crash, or a failed clean-up), prices it and records it.

    Uses the host keys the store pinned for each machine. A run that never finished (its orchestrator died) is
    recorded ``interrupted``; every machine's cost runs from its launch to now.

    Args:
        extra: machines a provider still lists for the run that the store does not hold as up (orphans).
        forget: give up the remote clean-up (``down --forget``: a box rebuilt with another host key, or one that
            never answers): nothing connects to the machines; reused boxes are released and recorded ``forgotten``,
            cloud machines terminated; a ``forget`` event records what was left where.
    """
    rows = store.machines(run_id, live_only=True)
    known = [row.machine for row in rows if row.machine is not None]
    known_ids = {m.id for m in known}
    orphans = [m for m in extra if m.id not in known_ids]
    touched = {row.machine_id for row in rows if row.touched and row.machine_id} | {m.id for m in orphans}
    try:
        run: RunRow | None = store.get_run(run_id)
    except OrchestrateError:
        run = None  # an orphan of a run the store never recorded: nothing to keep or price
    salvage = _Salvage()
    if run is not None and run.state not in FINAL_STATES and not forget:  # its orchestrator died: keep its results
        salvage = _salvaged(run_id, [m for m in known if m.id in touched], connect=connect, home=home)
    event = store.start_event(run_id, "forget") if forget and run is not None else None
    result = tear_down(store, run_id, [*known, *orphans], touched=touched, providers=providers,
                       provider_names={row.provider for row in rows}, connect=connect, home=home,
                       transports=salvage.transports, forget=forget)
    outcome = DownResult(run_id, [m.id for m in result.gone], result.failed,
                         forgotten={m.id: _left_on(m) for m in result.forgotten})
    if event is not None:
        store.end_event(event, "failed" if result.failed else "ok", _forget_detail(result, touched))
    if run is None:
        return outcome
    start, end = _execute_marks(store, run_id)
    until = now()
    costs = price_machines(known, gone_at=result.gone_at, execute_start=start, execute_end=end or until,
                           until=until)
    if run.state in FINAL_STATES:
        store.record_costs(run_id, costs)
        outcome.state = run.state
    else:
        # Machines its dead orchestrator had already torn down (it died recording) are priced too.
        gone = [row for row in store.machines(run_id) if row.machine is not None and row.state == "terminated"
                and row.terminated_at and row.machine.id not in known_ids]
        costs += price_machines([row.machine for row in gone if row.machine is not None],
                                gone_at={row.machine.id: datetime.fromisoformat(str(row.terminated_at))
                                         for row in gone if row.machine is not None},
                                execute_start=start, execute_end=end or until, until=until)
        error = "abandoned: its orchestrator process is gone; torn down by `orchestrate down`"
        if salvage.results:
            error += f"; the results the payload had written on {len(salvage.results)} machine(s) were kept"
        if result.forgotten:
            error += "; forgotten (`orchestrate down --forget`), not cleaned up: " + ", ".join(outcome.forgotten)
        if result.failed:
            error += "; cleanup_failed: " + ", ".join(result.failed)
        created = datetime.fromisoformat(run.created_at)
        if salvage.logs:
            store.record_logs(run_id, salvage.logs)
        store.finish_run(run_id, state="interrupted", duration_s=(until - created).total_seconds(), error=error,
                         log_tail=run.log_tail, results=salvage.results or None, costs=costs)
        outcome.state = "interrupted"
    outcome.cost_usd = sum(line.amount_usd for line in store.costs(run_id))
    return outcome


def _left_on(machine: Machine) -> str:
    """What a forgotten box may still hold: the run's directory, and a payload if it was still running."""
    return f"its run directory {machine.run_dir} and any payload still running there"


def _forget_detail(result: TeardownResult, touched: set[str]) -> str:
    """The ``forget`` event's detail: the clean-up given up, and what happened to each machine instead."""
    parts = ["remote clean-up given up by `orchestrate down --forget` (nothing connected to the machines)"]
    parts += [f"{m.id}: released, not cleaned up: {_left_on(m)}" for m in result.forgotten]
    parts += [f"{m.id}: terminated" + (" without its remote clean-up" if m.id in touched else "")
              for m in result.gone]
    parts += [f"{machine_id}: {why}" for machine_id, why in result.failed.items()]
    return "; ".join(parts)
