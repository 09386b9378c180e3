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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from orchestrator.errors import (
    BoxHeld,
    CapacityError,
    OrchestrateError,
    PayloadFailed,
    ProviderError,
    QuotaError,
    RunInterrupted,
)
from orchestrator.eviction import CheckpointKeeper, EvictionWatch, recovers, replace_evicted
from orchestrator.fanout import GroupResult, fan_out
from orchestrator.machine import LaunchRequest, Machine, Placement
from orchestrator.plan import Plan
from orchestrator.providers import get_provider
from orchestrator.providers.base import Provider
from orchestrator.remote.connect import Connector, transport_to
from orchestrator.remote.detached import follow
from orchestrator.remote.payload import build_bundle, suite_document
from orchestrator.remote.session import Session, tf_config
from orchestrator.store import Store, StoreLeases, now
from orchestrator.store.registry import LogRow
from orchestrator.teardown import TeardownResult, down_run, price_machines, tear_down

CONNECT_TIMEOUT_S = 300.0


class Reporter(Protocol):
    """How the lifecycle tells the user what happens; the CLI renders it."""

    def step(self, run_id: str, step: str, outcome: str, detail: str | None) -> None:
        """A step started (outcome "start") or ended (ok, failed, interrupted, skipped)."""
        ...

    def output(self, text: str) -> None:
        """New text from the payload's log."""
        ...

    def upload(self, host: str, sent: int, total: int) -> None:
        """Progress of the payload bundle's upload to one machine."""
        ...


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


@dataclass
class RunContext:
    """What a run needs from outside: where state lives, whom to tell, the clock, and how machines are made and
    reached (both injectable, so the lifecycle runs in-process against a fake provider)."""

    store: Store
    home: Path
    reporter: Reporter
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_interval_s: float = 0.5
    checkpoint_poll_s: float = 5.0  # one-machine spot runs: the least time between looks at the payload's backups
    eviction_poll_s: float = 15.0  # one-machine spot runs: how often the provider is asked if the machine is there
    provider_factory: Callable[[str], Provider] | None = None  # default: the registry, leases from the store
    connect: Connector = transport_to
    allowed_cidr: str | None = None  # clouds: who may reach port 22 (resolved before the run: orchestrator.access)
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # by provider, e.g. aws: profile
    _providers: dict[str, Provider] = field(default_factory=dict, repr=False)

    def provider(self, name: str) -> Provider:
        """The run's one instance of a provider."""
        if name not in self._providers:
            factory = self.provider_factory or store_providers(self.home, self.store, self.provider_options)
            self._providers[name] = factory(name)
        return self._providers[name]


def store_providers(
    home: Path, store: Store, options: dict[str, dict[str, Any]] | None = None
) -> Callable[[str], Provider]:
    """Providers by name, one instance each, the rented one with the store as its lease book (runs and `down`);
    ``options`` are each provider's settings by name (aws: ``{"profile": …}``)."""
    made: dict[str, Provider] = {}

    def provider(name: str) -> Provider:
        if name not in made:
            made[name] = get_provider(name, home, leases=StoreLeases(store), **(options or {}).get(name, {}))
        return made[name]

    return provider


class _Run:
    """One execution of a plan; use :func:`execute_plan`."""

    def __init__(self, plan: Plan, ctx: RunContext, run_id: str) -> None:
        self.plan = plan
        self.ctx = ctx
        self.run_id = run_id
        self.store = ctx.store
        self.sessions: list[Session] = []
        self.providers_used: set[str] = set()
        self.touched: set[str] = set()  # machines where the run made its directory
        self.leftovers: list[Machine] = []  # machines a failed launch left (no session): torn down and billed
        self.attempt_costs: list[dict[str, Any]] = []  # machines of failed launch attempts
        self.execute_start: datetime | None = None
        self.execute_end: datetime | None = None
        self.teardown_result = TeardownResult()
        self.cancel = threading.Event()
        self.evicted: list[str] = []  # machines the run lost to spot evictions (replaced)
        self.keeper = CheckpointKeeper(ctx.home / "checkpoints" / run_id, plan.spec.checkpoint_every_epochs,
                                       ctx.clock, ctx.checkpoint_poll_s)

    @property
    def machines(self) -> list[Machine]:
        return [session.machine for session in self.sessions]

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

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, str]]:
        """Records one lifecycle step as an event; the yielded dict's "detail" is stored with it."""
        event_id = self.store.start_event(self.run_id, name)
        self.ctx.reporter.step(self.run_id, name, "start", None)
        note: dict[str, str] = {}
        try:
            yield note
        except (RunInterrupted, KeyboardInterrupt):
            self.store.end_event(event_id, "interrupted", note.get("detail"))
            self.ctx.reporter.step(self.run_id, name, "interrupted", note.get("detail"))
            raise
        except BaseException as error:
            detail, why = note.get("detail"), str(error) or type(error).__name__
            self.store.end_event(event_id, "failed", detail if detail and why in detail else
                                 f"{detail}: {why}" if detail else why)
            self.ctx.reporter.step(self.run_id, name, "failed", str(error))
            raise
        outcome = note.get("outcome", "ok")
        self.store.end_event(event_id, outcome, note.get("detail"))
        self.ctx.reporter.step(self.run_id, name, outcome, note.get("detail"))

    def event(self, name: str, outcome: str, detail: str) -> None:
        """Records something that happened at once (a zone tried) as a finished event, and tells the user."""
        self.store.end_event(self.store.start_event(self.run_id, name), outcome, detail)
        self.ctx.reporter.step(self.run_id, name, outcome, detail)

    def on_every_machine(
        self, name: str, work: Callable[[Session], str],
        after: Callable[[GroupResult[Session, str]], None] | None = None,
    ) -> None:
        """Runs one step on every machine at once (one fan-out); fails with the first machine's error, named."""
        with self.step(name) as note:
            group = fan_out(self.sessions, work, name=lambda s: s.name, cancel=self.cancel, thread_name=name)
            note["detail"] = group.detail()
            if after is not None:
                after(group)
            group.raise_first()

    # provision -------------------------------------------------------------------------------------

    def provision(self, first_attempt: int = 1) -> None:
        """Launches the plan's placements in order until one succeeds (numbering the attempts from
        ``first_attempt``: a replacement for an evicted machine goes on from the run's earlier attempts)."""
        with self.step("provision") as note:
            from orchestrator.errors import SpotRefused

            failures: list[str] = []
            attempts = self.plan.attempts
            spot_refused = ""  # why every remaining spot placement is skipped, once one was refused as a whole
            for position, placement in enumerate(attempts, 1):
                attempt = position + first_attempt - 1
                if placement.spot and spot_refused:
                    failures.append(f"{placement.describe()}: skipped ({spot_refused})")
                    continue
                on_demand_left = any(not p.spot for p in attempts[position:])
                try:
                    machines = self.launch(attempt, placement)
                except QuotaError as error:
                    # A quota is raised by a person (the error names it), not found in another placement; only a
                    # spot quota leaves the on-demand placements the spec allows.
                    if not (placement.spot and on_demand_left):
                        raise
                    spot_refused = f"attempt {attempt} hit the spot quota, which refuses every spot placement"
                    failures.append(f"{placement.describe()}: {error}")
                    continue
                except CapacityError as error:
                    if isinstance(error, SpotRefused) and placement.spot:
                        # The same max price, the same account: every other spot placement would be refused too.
                        if not on_demand_left:
                            raise  # the market's one line says it best; no on-demand placement to fall back to
                        spot_refused = f"the spot market refused attempt {attempt} as a whole"
                    elif len(attempts) == 1:
                        raise  # nothing else to try: the provider's own words (and hint) say it best
                    failures.append(f"{placement.describe()}: {error}")
                    continue
                self.sessions = [Session(machine) for machine in machines]
                note["detail"] = (f"attempt {attempt}: " if attempt > 1 else "") + (
                    f"spot placements skipped: {spot_refused}; " if spot_refused else "") + ", ".join(
                    f"{m.id} at {m.access.describe()}" for m in machines)
                return
            more = len(self.plan.placements) - len(attempts)
            raise CapacityError(
                f"no placement could be launched in {len(attempts)} attempt(s): " + "; ".join(failures),
                hint=f"{more} more placement(s) allowed: raise max_attempts" if more > 0 else
                "try later, another region (regions: [...]) or another --gpu",
            )

    def launch(self, attempt: int, placement: Placement) -> list[Machine]:
        """One launch attempt: recorded before the provider is called; a capacity error sweeps what it left."""
        spec = self.plan.spec
        provider = self.ctx.provider(placement.provider)
        self.providers_used.add(placement.provider)
        request = LaunchRequest(
            run_id=self.run_id, placement=placement, count=self.plan.count, attempt=attempt,
            tags={"orchestrate-run": self.run_id}, wait_s=spec.machine.wait_s, image=placement.image or self.plan.image,
            allowed_cidr=self.ctx.allowed_cidr, on_try=lambda where, outcome, detail: self.event(
                "zone", outcome, f"attempt {attempt}: {where}: {detail}"),
        )
        recorded = {k: v for k, v in asdict(request).items() if k != "on_try"}
        # Recorded before the provider is called, so a crash mid-launch can still be cleaned up.
        row = self.store.record_launch_request(self.run_id, placement.provider, recorded, attempt=attempt)
        with self.step("launch") as note:
            note["detail"] = f"attempt {attempt}: {placement.describe()}"
            try:
                machines = provider.launch(request)
            except BoxHeld as error:
                if not spec.machine.reclaim:
                    raise
                self.reclaim(error)
                machines = provider.launch(request)
            except (CapacityError, QuotaError) as error:
                note["detail"] += f": {error}"
                self.sweep(provider, row, attempt, placement)
                raise
            except Exception:
                # Failed after the machines may exist (e.g. they never reached running): record what the provider
                # lists for the run, so that the teardown terminates them and the price step bills them.
                self.record_leftovers(provider, row, placement)
                raise
            machines = self.with_environment(machines)
            self.store.record_machines(row, machines)
            note["detail"] += ": " + ", ".join(m.id for m in machines)
            return machines

    def with_environment(self, machines: list[Machine]) -> list[Machine]:
        """The machines with the spec's image environment (``machine.environment``), where it names one."""
        given = self.plan.spec.machine.environment
        if given is None:
            return machines
        environment = given.environment()
        run_dir = f"{environment.workdir.rstrip('/')}/runs/{self.run_id}"
        return [replace(m, environment=environment, run_dir=run_dir) for m in machines]

    def listed(self, provider: Provider, placement: Placement) -> list[Machine]:
        """What the provider lists for the run, priced at the attempt's price where the listing knows none (a cloud's
        listing by tag knows the type, not the price)."""
        return [m if m.placement.price_per_hour or m.placement.price_fixed
                else replace(m, placement=replace(m.placement, price_per_hour=placement.price_per_hour))
                for m in provider.list_machines(run_id=self.run_id)]

    def record_leftovers(self, provider: Provider, row: int, placement: Placement) -> None:
        """Records the machines a launch that failed left (best effort: the teardown sweeps by tag regardless)."""
        try:
            found = self.listed(provider, placement)
            if found:
                self.store.record_machines(row, found)
        except Exception:  # noqa: BLE001 - the launch's own error is the one to raise
            return
        self.leftovers += found

    def sweep(self, provider: Provider, row: int, attempt: int, placement: Placement) -> None:
        """Finds what a failed attempt left (by tag), terminates and bills it (at the attempt's price where the
        listing knows none); a failed sweep stops failover."""
        found: list[Machine] = []
        try:
            found = self.listed(provider, placement)
            if found:
                self.store.record_machines(row, found)
            provider.terminate(self.run_id, found)
        except Exception as error:  # noqa: BLE001 - any failure here must stop failover
            self.store.mark_machines(self.run_id, [m.id for m in found], "cleanup_failed")
            raise ProviderError(
                f"attempt {attempt} left machines that could not be cleaned up ({error}); not trying other placements",
                hint=f"run `orchestrate down {self.run_id}`",
            ) from error
        gone = now()
        self.store.mark_machines(self.run_id, [m.id for m in found], "terminated", at=gone)
        if not found:
            self.store.end_request(row, "failed")
        self.attempt_costs += price_machines(found, gone_at={m.id: gone for m in found}, execute_start=None,
                                             execute_end=None, until=gone)

    def reclaim(self, error: BoxHeld) -> None:
        """--reclaim: tears down the runs that hold the boxes (stopping their payloads), as `down` would."""
        runs = sorted({holder.run_id for holder in error.holders.values()})
        with self.step("reclaim") as note:
            done = [down_run(self.store, run_id, providers=self.ctx.provider, connect=self.ctx.connect,
                             home=self.ctx.home) for run_id in runs]
            note["detail"] = "; ".join(f"{d.run_id}: {d.state}, stopped on {', '.join(d.gone) or 'nothing'}"
                                       for d in done)
            failed = {machine: why for d in done for machine, why in d.failed.items()}
            if failed:
                raise ProviderError("--reclaim could not clean up " + "; ".join(f"{m}: {w}" for m, w in failed.items()))

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
        keep = recovers(self)  # a spot machine that may vanish: its backups are copied back as training goes

        def wait(seconds: float) -> None:
            if keep:
                self.keeper.tick(session)
            self.ctx.sleep(seconds)

        watch = EvictionWatch(self, session, self.ctx.eviction_poll_s) if keep else nullcontext()
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
                    if not replace_evicted(self):  # a spot machine gone: replaced, its training resumed
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

    def price(self) -> list[dict[str, Any]]:
        if not self.sessions and not self.attempt_costs and not self.leftovers:
            return []
        with self.step("price") as note:
            rows = self.attempt_costs + price_machines(
                [*self.machines, *self.leftovers], gone_at=self.teardown_result.gone_at,
                execute_start=self.execute_start, execute_end=self.execute_end, until=now(),
            )
            total = sum(float(row["amount_usd"]) for row in rows)
            per_hour = sum(m.placement.price_per_hour for m in self.machines)
            note["detail"] = f"${total:.4f} for {len({row['machine_id'] for row in rows})} machine(s)" + (
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
    outcome.cost_usd = sum(float(row["amount_usd"]) for row in costs)
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
