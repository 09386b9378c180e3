"""The run state machine (DESIGN §3); the only place that sequences providers, remote and store.

    plan → provision → connect → prepare → push → execute → collect → teardown → price → record

Every step writes an event row. Provisioning tries the plan's placements in order: a capacity error is recorded as
a failed ``launch`` event, what the attempt left is swept (by tag) and billed, and the next placement is tried; a
quota error is swept and billed the same way but ends the run with the quota to raise; an auth error never fails
over and a failed sweep stops failover. Teardown, pricing and recording run in
``finally`` on every path, SIGINT and SIGTERM included, each guarded so that no exception of any type skips the
rest; while they run, further signals are held back so that a second Ctrl-C cannot leave a machine behind.
"""

from __future__ import annotations

import json
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import FrameType
from typing import Any

from orchestrator.cost import CostLine
from orchestrator.errors import OrchestrateError, PayloadFailed, ProviderError, RunInterrupted
from orchestrator.eviction import MAX_EVICTIONS, CheckpointKeeper, EvictionWatch, confirm_gone
from orchestrator.fanout import GroupResult
from orchestrator.machine import Machine
from orchestrator.plan import Plan
from orchestrator.provision import Provisioning
from orchestrator.remote.detached import follow
from orchestrator.remote.payload import build_bundle, suite_document
from orchestrator.remote.session import Session, tf_config
from orchestrator.run_steps import RunContext
from orchestrator.store import LogRow, now
from orchestrator.teardown import TeardownResult, price_machines, tear_down

CONNECT_TIMEOUT_S = 300.0

@dataclass
class RunOutcome:
    """How a run ended."""

    run_id: str
    state: str  # succeeded, failed or interrupted
    duration_s: float
    error: str | None = None
    hint: str | None = None
    log_tail: str | None = None
    results: dict[str, Any] | None = None
    cost_usd: float = 0.0


def new_run_id() -> str:
    """Returns a sortable, unique run id such as ``r-20261128-180102-3fa9``."""
    return f"r-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class _Signals:
    """SIGINT and SIGTERM raise RunInterrupted while armed; while held, they are only noted."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._held = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._held:
            self.received = self.received or name
            return
        self.received = name
        raise RunInterrupted(f"interrupted by {name}")

    @contextmanager
    def armed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def held(self) -> Iterator[None]:
        self._held = True
        try:
            yield
        finally:
            self._held = False


class _Run(Provisioning):
    """One execution of a plan; use :func:`execute_plan`. Provisioning (launch attempts, failover, sweeps) is the
    base class's; this adds the steps on the machines, the replacement of an evicted machine, and the end."""

    def __init__(self, plan: Plan, ctx: RunContext, run_id: str) -> None:
        super().__init__(plan, ctx, run_id)
        self.touched: set[str] = set()  # machines where the run made its directory
        self.execute_start: datetime | None = None
        self.execute_end: datetime | None = None
        self.teardown_result = TeardownResult()
        self.evicted: list[str] = []  # machines the run lost to spot evictions (replaced)
        self.keeper = CheckpointKeeper(ctx.home / "checkpoints" / run_id, plan.spec.checkpoint_every_epochs,
                                       ctx.clock, ctx.checkpoint_poll_s)

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        """Validated results documents by machine id."""
        return {s.machine.id: s.results for s in self.sessions if s.results is not None}

    @property
    def log_tail(self) -> str | None:
        tails = [(s.machine.id, s.log_tail) for s in self.sessions if s.log_tail]
        if len(tails) == 1:
            return tails[0][1]
        return "\n".join(f"[{host}] {line}" for host, tail in tails for line in (tail or "").splitlines()) or None

    # on every machine ------------------------------------------------------------------------------

    def connect(self, session: Session) -> str:
        session.transport = self.ctx.connect(session.machine.access, self.ctx.home, CONNECT_TIMEOUT_S)
        return session.open_run_dir()

    def after_connect(self, group: GroupResult[Session, str]) -> None:
        """Records which machines the run reached, pinning a key trusted on first use to the machine."""
        for session in self.sessions:
            if session.transport is None:
                continue
            self.touched.add(session.machine.id)
            seen = getattr(session.transport, "host_key_fingerprint", None)
            if session.machine.access.host_key is None and isinstance(seen, str):
                session.machine = session.machine.with_host_key(seen)
            self.store.update_machine(session.machine, touched=True)

    def push(self) -> None:
        bundle = build_bundle()
        suite_bytes = json.dumps(
            suite_document(self.plan.suite.name, self.run_id, self.plan.params), indent=2, sort_keys=True
        ).encode()
        self.on_every_machine("push", lambda s: s.push(
            bundle, suite_bytes, lambda sent, total: self.ctx.reporter.upload(s.name, sent, total)))

    def execute(self, session: Session, worker_index: int) -> str:
        env = {"PYTHONUNBUFFERED": "1", "KERAS_BACKEND": self.plan.spec.backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        if self.plan.spec.multi_node and len(self.sessions) > 1:
            env["TF_CONFIG"] = tf_config(self.machines, worker_index, self.plan.spec.multi_node_port)
        pgid = session.start(env)
        assert session.process is not None
        prefix = f"[{session.name}] " if len(self.sessions) > 1 else ""
        keep = self.recovers()  # a spot machine that may vanish: its backups are copied back as training goes

        def wait(seconds: float) -> None:
            if keep:
                self.keeper.tick(session)
            self.ctx.sleep(seconds)

        watch = EvictionWatch(partial(self.listed_now, session.machine), session, self.ctx.eviction_poll_s) \
            if keep else nullcontext()
        with watch:
            exit_code = self.follow(session, prefix, wait)
        if exit_code != 0:
            raise PayloadFailed(f"the payload exited with code {exit_code}")
        return f"process group {pgid} exited with code 0"

    def follow(self, session: Session, prefix: str, wait: Callable[[float], None]) -> int:
        """Tails the machine's payload until it exits (echoing its log); returns its exit code."""
        assert session.process is not None
        return follow(
            session.process,
            timeout_s=self.plan.spec.timeout_s,
            on_output=lambda text: self.ctx.reporter.output(
                "".join(prefix + line for line in text.splitlines(keepends=True)) if prefix else text
            ),
            poll_interval_s=self.ctx.poll_interval_s,
            clock=self.ctx.clock,
            sleep=wait,
            cancelled=self.cancel.is_set,
        )

    def run_payload(self) -> None:
        self.store.set_state(self.run_id, "running")
        self.execute_start = now()
        try:
            while True:
                try:
                    self.on_every_machine("execute", lambda s: self.execute(
                        s, next(i for i, session in enumerate(self.sessions) if session is s)))
                    return
                except (RunInterrupted, KeyboardInterrupt):
                    raise
                except Exception:
                    if not self.replace_evicted():  # a spot machine gone: replaced, its training resumed
                        raise
        finally:
            self.execute_end = now()
            self.keeper.forget()

    def collect(self) -> None:
        """Fetches results documents and logs, and keeps the logs: after success, failure or interrupt alike."""
        started = [s for s in self.sessions if s.process is not None and not s.collected]
        if not started:
            return
        sessions, self.sessions = self.sessions, started
        try:
            self.on_every_machine("collect", lambda s: s.collect(self.run_id))
        finally:
            self.sessions = sessions
            self.store.record_logs(self.run_id, [LogRow(s.machine.id, s.log, s.log_skipped)
                                                 for s in started if s.log is not None])

    def stop_payloads(self) -> None:
        """Kills every payload that may still run (interrupt, failure on another machine)."""
        self.cancel.set()
        for session in self.sessions:
            if session.process is not None:
                with suppress(Exception):
                    session.process.kill()

    # a spot machine evicted -----------------------------------------------------------------------

    def recovers(self) -> bool:
        """Whether a failure of the execute step may be an eviction the run recovers from: one machine, spot, fewer
        than :data:`MAX_EVICTIONS` replacements so far."""
        return (len(self.sessions) == 1 and self.sessions[0].machine.placement.spot
                and len(self.evicted) < MAX_EVICTIONS)

    def listed_now(self, machine: Machine) -> bool:
        """Whether the machine's provider lists it for the run now; raises when the provider cannot be asked."""
        listed = self.ctx.provider(machine.provider).list_machines(run_id=self.run_id)
        return any(m.id == machine.id for m in listed)

    def replace_evicted(self) -> bool:
        """After the execute step failed: when the provider no longer lists the run's (spot) machine, records the
        eviction (the machine billed up to now), launches a replacement, readies it as the first one was, and
        restores the copied-back backups. Returns False (the failure stands) when the machine is still there or
        cannot be asked."""
        if not self.recovers():
            return False
        session = self.sessions[0]
        machine = session.machine
        if not confirm_gone(partial(self.listed_now, machine), clock=self.ctx.clock, wait=self.cancel.wait,
                            poll_s=self.ctx.eviction_poll_s):
            return False
        at = now()
        self.evicted.append(machine.id)
        self.event("evict", "failed", f"{machine.id} ({machine.placement.describe()}) is gone: evicted; backups of "
                   f"{self.keeper.epochs} epoch(s) were copied back; replacing it "
                   f"({len(self.evicted)} of at most {MAX_EVICTIONS})")
        self.store.mark_machines(self.run_id, [machine.id], "evicted", at=at)
        self.attempt_costs += price_machines([machine], gone_at={machine.id: at}, execute_start=self.execute_start,
                                             execute_end=at, until=at)
        if session.transport is not None:
            with suppress(Exception):
                session.transport.close()
        self.sessions = []
        self.provision(first_attempt=max(row.attempt for row in self.store.machines(self.run_id)) + 1)
        self.on_every_machine("connect", self.connect, after=self.after_connect)
        self.on_every_machine("prepare", lambda s: s.prepare(self.plan.spec.backend))
        self.push()
        self.on_every_machine("restore", self.keeper.restore)
        return True

    # the end ---------------------------------------------------------------------------------------

    def teardown(self) -> None:
        if not self.sessions and not self.providers_used and not self.leftovers:
            return
        with self.step("teardown") as note:
            if self.plan.spec.keep:
                for session in self.sessions:
                    if session.transport is not None:
                        session.transport.close()
                note["outcome"] = "skipped"
                note["detail"] = "--keep: left " + ", ".join(f"{m.id}:{m.run_dir}" for m in self.machines)
                return
            result = tear_down(
                self.store, self.run_id, [*self.machines, *self.leftovers], touched=self.touched,
                providers=self.ctx.provider,
                provider_names=self.providers_used, connect=self.ctx.connect, home=self.ctx.home,
                transports={s.machine.id: s.transport for s in self.sessions if s.transport is not None},
            )
            self.teardown_result = result
            note["detail"] = result.describe()
            if result.failed:
                reasons = "; ".join(f"{machine_id} ({why})" for machine_id, why in result.failed.items())
                raise ProviderError(f"cleanup_failed: {reasons}: may still be up",
                                    hint=f"run `orchestrate down {self.run_id}` to retry the teardown")

    def price(self) -> list[CostLine]:
        if not self.sessions and not self.attempt_costs and not self.leftovers:
            return []
        with self.step("price") as note:
            rows = self.attempt_costs + price_machines(
                [*self.machines, *self.leftovers], gone_at=self.teardown_result.gone_at,
                execute_start=self.execute_start, execute_end=self.execute_end, until=now(),
            )
            total = sum(line.amount_usd for line in rows)
            per_hour = sum(m.placement.price_per_hour for m in self.machines)
            note["detail"] = f"${total:.4f} for {len({line.machine_id for line in rows})} machine(s)" + (
                f", ${per_hour:g}/h while the run's machines were up" if self.machines else "")
            return rows


def execute_plan(plan: Plan, ctx: RunContext, *, run_id: str | None = None) -> RunOutcome:
    """Runs a plan through every lifecycle step and records it; teardown runs on every path.

    Returns:
        The outcome; a failed or interrupted run is an outcome, not an exception.

    Raises:
        Exception: only a bug (an unexpected exception) propagates, after teardown and recording.
    """
    run_id = run_id or new_run_id()
    started = ctx.clock()
    run = _Run(plan, ctx, run_id)
    signals = _Signals()
    outcome = RunOutcome(run_id=run_id, state="failed", duration_s=0.0)
    bug: BaseException | None = None
    try:
        with signals.armed():
            # Interrupted before this commits: there is no run and nothing was launched.
            ctx.store.create_run(
                run_id, provider=plan.spec.provider, suite=plan.suite.name, name=plan.spec.name,
                spec=plan.spec.model_dump(mode="json"),
            )
            try:
                with run.step("plan") as note:
                    note["detail"] = (f"suite {plan.suite.name}, {len(plan.attempts)} placement(s): "
                                      f"{plan.placements[0].describe()}; estimated {plan.estimated_duration_s:.0f} s"
                                      + "".join(f"; warning: {text}" for text in plan.warnings))
                run.provision()
                run.on_every_machine("connect", run.connect, after=run.after_connect)
                run.on_every_machine("prepare", lambda s: s.prepare(plan.spec.backend))
                run.push()
                run.run_payload()
                run.collect()
                if len(run.results) < len(run.sessions):
                    raise PayloadFailed("the payload exited 0 but wrote no results document")
                outcome.state = "succeeded"
            except (RunInterrupted, KeyboardInterrupt) as error:
                outcome.state, outcome.error = "interrupted", str(error) or "interrupted by SIGINT"
            except OrchestrateError as error:
                outcome.state, outcome.error, outcome.hint = "failed", str(error), error.hint
            except Exception as error:  # a bug: still tear down and record, then re-raise
                outcome.state, outcome.error, bug = "failed", f"internal error: {error!r}", error
            finally:
                with signals.held():
                    _finish(run, outcome, ctx, started)
    except (RunInterrupted, KeyboardInterrupt) as error:
        # Landed before the inner try: either no run was recorded, or _finish has run.
        outcome.state, outcome.error = "interrupted", str(error) or "interrupted"
    if bug is not None:
        raise bug
    return outcome


def _finish(run: _Run, outcome: RunOutcome, ctx: RunContext, started: float) -> None:
    """Collect (if not yet), teardown, price and record: each guarded, so no exception skips the rest.

    The first error stays the run's cause; later ones are added to it.
    """

    def guarded(what: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except Exception as error:  # noqa: BLE001 - of any type: the rest of the teardown must run
            text = str(error) if isinstance(error, OrchestrateError) else f"{what}: internal error: {error!r}"
            outcome.error = f"{outcome.error}; {text}" if outcome.error else text
            if isinstance(error, OrchestrateError) and error.hint and not outcome.hint:
                outcome.hint = error.hint
            if outcome.state == "succeeded":
                outcome.state = "failed"
            return None

    if outcome.state != "succeeded":
        guarded("stopping the payloads", run.stop_payloads)
        run.execute_end = run.execute_end or (now() if run.execute_start else None)
    guarded("collect", run.collect)
    guarded("teardown", run.teardown)
    if run.teardown_result.failed:
        outcome.hint = f"run `orchestrate down {run.run_id}` to retry the teardown"
    costs = guarded("price", run.price) or []
    results = run.results
    outcome.results = next(iter(results.values()), None)
    outcome.log_tail = run.log_tail
    outcome.duration_s = ctx.clock() - started
    outcome.cost_usd = sum(line.amount_usd for line in costs)
    event = ctx.store.start_event(run.run_id, "record")
    ctx.store.finish_run(
        run.run_id,
        state=outcome.state,
        duration_s=outcome.duration_s,
        error=outcome.error,
        log_tail=outcome.log_tail if outcome.state != "succeeded" else None,
        results=results or None,
        costs=costs,
    )
    ctx.store.end_event(event, "ok", outcome.state)
