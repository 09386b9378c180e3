"""The run state machine (DESIGN §3); the only place that sequences providers, remote and store.

    plan → provision → connect → prepare → push → execute → collect → teardown → price → record

Every step writes an event row. Teardown, pricing and recording run in ``finally`` on every path, SIGINT
and SIGTERM included; while they run, further signals are held back so that a second Ctrl-C cannot leave
a machine behind.
"""

from __future__ import annotations

import secrets
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from orchestrator.cost import billing_rule, price_run
from orchestrator.errors import EnvironmentNotReady, OrchestrateError, PayloadFailed, RemoteError, RunInterrupted
from orchestrator.payload import SUITE_FILE, build_bundle, check_params, suite_document
from orchestrator.providers import get_provider
from orchestrator.providers.base import LaunchRequest, Machine, Offer, Provider
from orchestrator.remote import DetachedProcess, LocalTransport, Transport, check, follow
from orchestrator.results import parse_results
from orchestrator.spec import ParamValue, RunSpec, SuiteSpec, load_suite, resolve_params
from orchestrator.store import Store

STEPS = ("plan", "provision", "connect", "prepare", "push", "execute", "collect", "teardown", "price", "record")
RESULTS_FILE = "results.json"
BUNDLE_FILE = "bundle.tar.gz"
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
# Seconds a provider needs before the payload starts, for the plan's estimate.
SETUP_ESTIMATE_S = {"local": 2.0}


@dataclass(frozen=True)
class Plan:
    """What a run will do, resolved from the spec; making one has no side effects."""

    spec: RunSpec
    suite: SuiteSpec
    params: dict[str, ParamValue]
    offer: Offer
    steps: tuple[str, ...] = STEPS
    estimated_duration_s: float = 0.0
    estimated_cost_usd: float = 0.0


def make_plan(spec: RunSpec) -> Plan:
    """Resolves a spec into a plan: suite params, offer, estimated duration and cost.

    Raises:
        SpecError: the suite or its params are invalid.
    """
    suite = load_suite(spec.suite)
    params = resolve_params(suite, spec.params)
    check_params(suite.name, params)
    price = spec.machine.price_per_hour or 0.0
    offer = Offer(instance_type=spec.machine.instance_type or spec.provider, price_per_hour=price)
    duration = SETUP_ESTIMATE_S.get(spec.provider, 120.0) + suite.estimated_duration_s
    rule = billing_rule(offer.billing_rule)
    cost = rule.billed_seconds(duration) / 3600.0 * price * spec.machine.count
    return Plan(spec, suite, params, offer, estimated_duration_s=duration, estimated_cost_usd=cost)


class Reporter(Protocol):
    """How the lifecycle tells the user what happens; the CLI renders it."""

    def step(self, run_id: str, step: str, outcome: str, detail: str | None) -> None:
        """A step started (outcome "start") or ended (ok, failed, interrupted, skipped)."""
        ...

    def output(self, text: str) -> None:
        """New text from the payload's log."""
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


def transport_for(machine: Machine) -> Transport:
    """Returns how to reach a machine.

    Raises:
        RemoteError: no transport exists for the machine's provider yet.
    """
    if machine.provider == "local":
        return LocalTransport()
    raise RemoteError(f"no transport for provider {machine.provider!r}")


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
class _Timeline:
    """Monotonic marks for pricing: launch, payload start and end, machines gone."""

    launch: float | None = None
    execute_start: float | None = None
    execute_end: float | None = None
    terminated: float | None = None


@dataclass
class RunContext:
    """What a run needs from outside: where state lives, whom to tell, and the clock."""

    store: Store
    home: Path
    reporter: Reporter
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_interval_s: float = 0.5
    provider_factory: Callable[[str, Path], Provider] = field(default=get_provider)


class _Run:
    """One execution of a plan; use :func:`execute_plan`."""

    def __init__(self, plan: Plan, ctx: RunContext, run_id: str) -> None:
        self.plan = plan
        self.ctx = ctx
        self.run_id = run_id
        self.store = ctx.store
        self.marks = _Timeline()
        self.machines: list[Machine] = []
        self.provider: Provider | None = None
        self.transport: Transport | None = None
        self.process: DetachedProcess | None = None
        self.collected = False
        self.results: dict[str, Any] | None = None
        self.log_tail: str | None = None

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
            self.store.end_event(event_id, "failed", str(error) or type(error).__name__)
            self.ctx.reporter.step(self.run_id, name, "failed", str(error))
            raise
        outcome = note.get("outcome", "ok")
        self.store.end_event(event_id, outcome, note.get("detail"))
        self.ctx.reporter.step(self.run_id, name, outcome, note.get("detail"))

    # the steps -------------------------------------------------------------------------------------

    def provision(self) -> None:
        spec = self.plan.spec
        with self.step("provision") as note:
            self.provider = self.ctx.provider_factory(spec.provider, self.ctx.home)
            request = LaunchRequest(
                run_id=self.run_id,
                offer=self.plan.offer,
                count=spec.machine.count,
                tags={"orchestrate-run": self.run_id},
            )
            # Recorded before the provider is called, so a crash mid-launch can still be cleaned up.
            row_id = self.store.record_launch_request(self.run_id, spec.provider, asdict(request))
            self.marks.launch = self.ctx.clock()
            self.machines = self.provider.launch(request)
            for machine in self.machines:
                self.store.record_machine(
                    row_id, machine_id=machine.id, address=machine.address, launched_at=machine.launched_at,
                    extra={"workdir": machine.workdir, **machine.extra},
                )
            note["detail"] = ", ".join(f"{m.id} at {m.address}" for m in self.machines)

    def connect(self) -> None:
        machine = self.machines[0]
        with self.step("connect") as note:
            self.transport = transport_for(machine)
            check(self.transport, "true", what=f"reaching {machine.address}", timeout=30.0)
            note["detail"] = f"{machine.user}@{machine.address}"

    def prepare(self) -> None:
        machine, transport = self.machines[0], self._transport()
        python = machine.extra.get("python", "python3")
        modules = ["keras", BACKEND_MODULES[self.plan.spec.backend]]
        with self.step("prepare") as note:
            probe = (
                "import importlib.util as u, sys; "
                f"missing = [m for m in {modules!r} if u.find_spec(m) is None]; "
                "print(' '.join(missing) or sys.version.split()[0]); sys.exit(1 if missing else 0)"
            )
            result = transport.run(f"{shlex.quote(python)} -c {shlex.quote(probe)}", timeout=60.0)
            answer = result.stdout.decode(errors="replace").strip()
            if result.exit_code != 0:
                missing = answer or result.stderr.decode(errors="replace").strip()[-200:]
                raise EnvironmentNotReady(
                    f"the payload's Python ({python}) on {machine.address} lacks: {missing}",
                    hint="install the payload extra there: pip install 'orchestrate[payload]'",
                )
            note["detail"] = f"python {answer} with {', '.join(modules)}"

    def push(self) -> None:
        machine, transport = self.machines[0], self._transport()
        with self.step("push") as note:
            bundle = build_bundle(suite_document(self.plan.suite.name, self.run_id, self.plan.params))
            transport.put_bytes(bundle.archive, f"{machine.workdir}/{BUNDLE_FILE}")
            check(
                transport,
                f"cd {shlex.quote(machine.workdir)} && tar -xzf {BUNDLE_FILE} && rm -f {BUNDLE_FILE}",
                what="unpacking the payload",
            )
            note["detail"] = f"{bundle.files} files, {len(bundle.archive)} bytes, sha256 {bundle.content_hash[:12]}"

    def execute(self) -> None:
        machine, transport = self.machines[0], self._transport()
        python = machine.extra.get("python", "python3")
        with self.step("execute") as note:
            self.store.set_state(self.run_id, "running")
            self.process = DetachedProcess(transport, machine.workdir)
            env = {
                "PYTHONPATH": machine.workdir,
                "PYTHONUNBUFFERED": "1",
                "KERAS_BACKEND": self.plan.spec.backend,
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
            argv = [python, "-m", "keras_bench", "--suite", SUITE_FILE, "--out", RESULTS_FILE]
            self.marks.execute_start = self.ctx.clock()
            pgid = self.process.start(argv, env)
            note["detail"] = f"process group {pgid}"
            exit_code = follow(
                self.process,
                timeout_s=self.plan.spec.timeout_s,
                on_output=self.ctx.reporter.output,
                poll_interval_s=self.ctx.poll_interval_s,
                clock=self.ctx.clock,
                sleep=self.ctx.sleep,
            )
            self.marks.execute_end = self.ctx.clock()
            note["detail"] = f"process group {pgid} exited with code {exit_code}"
            if exit_code != 0:
                raise PayloadFailed(f"the payload exited with code {exit_code}")

    def collect(self) -> None:
        """Fetches the results document and the log tail: after success, failure or interrupt alike."""
        if self.process is None or self.collected:
            return
        self.collected = True
        with self.step("collect") as note:
            self.log_tail = self.process.log_tail()
            raw = self.process.read_file(RESULTS_FILE)
            if raw is None:
                note["outcome"], note["detail"] = "failed", "no results document"
                return
            document = parse_results(raw)
            if document.get("run_id") != self.run_id:
                raise PayloadFailed(
                    f"the results document belongs to run {document.get('run_id')!r}, not {self.run_id!r}"
                )
            self.results = document
            note["detail"] = f"{len(document['samples'])} samples, {len(document['errors'])} payload errors"

    def teardown(self) -> None:
        if not self.machines or self.provider is None:
            return
        with self.step("teardown") as note:
            if self.process is not None and self.marks.execute_end is None:
                self.process.kill()
            if self.plan.spec.keep:
                note["outcome"] = "skipped"
                note["detail"] = "--keep: left " + ", ".join(m.workdir for m in self.machines)
                return
            self.provider.terminate(self.machines)
            self.store.mark_terminated(self.run_id)
            self.marks.terminated = self.ctx.clock()
            note["detail"] = "terminated " + ", ".join(m.id for m in self.machines)

    def price(self) -> list[dict[str, Any]]:
        marks, end = self.marks, self.marks.terminated or self.ctx.clock()
        if marks.launch is None:
            return []
        with self.step("price") as note:
            start_exec = marks.execute_start or end
            end_exec = marks.execute_end or (end if marks.execute_start else start_exec)
            lines = price_run(
                setup_s=start_exec - marks.launch,
                compute_s=end_exec - start_exec,
                teardown_s=end - end_exec,
                price_per_hour=self.plan.offer.price_per_hour * len(self.machines or [None]),
                rule=billing_rule(self.plan.offer.billing_rule),
            )
            total = sum(line.amount_usd for line in lines)
            note["detail"] = f"${total:.4f} at ${self.plan.offer.price_per_hour:g}/h ({lines[0].rule})"
            return [asdict(line) for line in lines]

    def _transport(self) -> Transport:
        if self.transport is None:
            raise RemoteError("no connection to the machine")
        return self.transport


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
                event = ctx.store.start_event(run_id, "plan")
                ctx.store.end_event(
                    event, "ok", f"suite {plan.suite.name}, estimated {plan.estimated_duration_s:.0f} s"
                )
                run.provision()
                run.connect()
                run.prepare()
                run.push()
                run.execute()
                run.collect()
                if run.results is None:
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
    """Collect (if not yet), teardown, price and record, each guarded so one failure does not skip the rest."""
    if outcome.state == "interrupted" and run.process is not None:
        with suppress(OrchestrateError):
            run.process.kill()
        run.marks.execute_end = run.marks.execute_end or ctx.clock()
    try:
        run.collect()
    except OrchestrateError as error:
        if outcome.state == "succeeded":
            outcome.state, outcome.error = "failed", str(error)
    try:
        run.teardown()
    except OrchestrateError as error:
        outcome.error = (outcome.error + "; " if outcome.error else "") + f"teardown failed: {error}"
        outcome.hint = f"run `orchestrate down {run.run_id}` to retry the teardown"
        if outcome.state == "succeeded":
            outcome.state = "failed"
    costs = run.price()
    outcome.results = run.results
    outcome.log_tail = run.log_tail
    outcome.duration_s = ctx.clock() - started
    outcome.cost_usd = sum(row["amount_usd"] for row in costs)
    event = ctx.store.start_event(run.run_id, "record")
    ctx.store.finish_run(
        run.run_id,
        state=outcome.state,
        duration_s=outcome.duration_s,
        error=outcome.error,
        log_tail=outcome.log_tail if outcome.state != "succeeded" else None,
        results=run.results,
        costs=costs,
    )
    ctx.store.end_event(event, "ok", outcome.state)
