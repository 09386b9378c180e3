"""The run state machine (DESIGN §3); the only place that sequences providers, remote and store.

    plan → provision → connect → prepare → push → execute → collect → teardown → price → record

Every step writes an event row. Teardown, pricing and recording run in ``finally`` on every path, SIGINT
and SIGTERM included; while they run, further signals are held back so that a second Ctrl-C cannot leave
a machine behind.
"""

from __future__ import annotations

import json
import secrets
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from orchestrator.cost import billing_rule, price_run
from orchestrator.errors import OrchestrateError, PayloadFailed, RemoteError, RunInterrupted
from orchestrator.providers import get_provider
from orchestrator.providers.base import LaunchRequest, Machine, Offer, Provider
from orchestrator.remote.connect import transport_to
from orchestrator.remote.detached import DetachedProcess, follow
from orchestrator.remote.payload import (
    SAFE_EXTRACT,
    SUITE_FILE,
    Bundle,
    build_bundle,
    check_params,
    suite_document,
)
from orchestrator.remote.prepare import prepare_machine
from orchestrator.remote.transport import Transport, check
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
    instance_type = spec.machine.instance_type or spec.provider
    if spec.machine.hosts:
        instance_type = "host:" + ",".join(spec.machine.hosts)
    elif spec.machine.gpu:
        instance_type = f"gpu:{spec.machine.gpu}"
    offer = Offer(instance_type=instance_type, price_per_hour=price)
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


@dataclass
class _Node:
    """One machine of a run and what the run has done on it."""

    machine: Machine
    transport: Transport | None = None
    workdir: str = ""  # absolute path of the run directory on the machine
    python: str = "python3"
    payload_dir: str = ""  # absolute path holding keras_bench on the machine
    process: DetachedProcess | None = None
    collected: bool = False
    results: dict[str, Any] | None = None
    log_tail: str | None = None

    def reach(self) -> Transport:
        if self.transport is None:
            raise RemoteError(f"no connection to {self.machine.id}")
        return self.transport


class _Run:
    """One execution of a plan; use :func:`execute_plan`."""

    def __init__(self, plan: Plan, ctx: RunContext, run_id: str) -> None:
        self.plan = plan
        self.ctx = ctx
        self.run_id = run_id
        self.store = ctx.store
        self.marks = _Timeline()
        self.machines: list[Machine] = []
        self.nodes: list[_Node] = []
        self.provider: Provider | None = None
        self.cancel = threading.Event()

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        """Validated results documents by machine id."""
        return {n.machine.id: n.results for n in self.nodes if n.results is not None}

    @property
    def log_tail(self) -> str | None:
        tails = [(n.machine.id, n.log_tail) for n in self.nodes if n.log_tail]
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
            self.store.end_event(event_id, "failed", str(error) or type(error).__name__)
            self.ctx.reporter.step(self.run_id, name, "failed", str(error))
            raise
        outcome = note.get("outcome", "ok")
        self.store.end_event(event_id, outcome, note.get("detail"))
        self.ctx.reporter.step(self.run_id, name, outcome, note.get("detail"))

    def on_every_node(self, name: str, work: Callable[[_Node], str]) -> None:
        """Runs one step on every machine at once; the step fails with the first error after all have ended.

        Args:
            name: the step's name, recorded as one event.
            work: does the step on one node and returns a detail for the event.
        """
        with self.step(name) as note:
            if len(self.nodes) == 1:
                note["detail"] = work(self.nodes[0])
                return
            pool = ThreadPoolExecutor(max_workers=len(self.nodes), thread_name_prefix=name)
            futures = {pool.submit(work, node): node for node in self.nodes}
            try:
                wait(futures)
            except BaseException:
                # Interrupted: do not wait for the workers here; payload tails stop at their next poll and
                # teardown stops what they started.
                self.cancel.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            details, errors = [], []
            for future, node in futures.items():
                error = future.exception()
                if error is None:
                    details.append(f"{node.machine.id}: {future.result()}")
                else:
                    errors.append((node, error))
                    details.append(f"{node.machine.id}: {error}")
            note["detail"] = "; ".join(details)
            if errors:
                node, first = errors[0]
                if isinstance(first, OrchestrateError):
                    first.args = (f"{node.machine.id}: {first}",)  # same error, saying which machine
                raise first

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
                wait_s=spec.machine.wait_s,
            )
            # Recorded before the provider is called, so a crash mid-launch can still be cleaned up.
            row_id = self.store.record_launch_request(self.run_id, spec.provider, asdict(request))
            self.marks.launch = self.ctx.clock()
            self.machines = self.provider.launch(request)
            for machine in self.machines:
                self.store.record_machine(
                    row_id, machine_id=machine.id, address=machine.address, launched_at=machine.launched_at,
                    extra={"workdir": machine.workdir, "port": str(machine.port), "user": machine.user,
                           "host_key": machine.host_key or "", **machine.extra},
                )
            self.nodes = [_Node(machine) for machine in self.machines]
            note["detail"] = ", ".join(f"{m.id} at {m.address}" for m in self.machines)

    def connect(self, node: _Node) -> str:
        machine = node.machine
        node.transport = transport_to(machine, self.ctx.home)
        workdir = shlex.quote(machine.workdir)
        out = check(node.transport, f"mkdir -p {workdir} && chmod 700 {workdir} && cd {workdir} && pwd",
                    what=f"creating the run directory on {machine.id}")
        node.workdir = out.decode().strip()
        port = f":{machine.port}" if machine.port else ""
        return f"{machine.user}@{machine.address}{port} {node.workdir}"

    def prepare(self, node: _Node) -> str:
        machine = node.machine
        node.python, detail = prepare_machine(
            node.reach(),
            machine_id=machine.id,
            address=machine.address,
            mode=machine.extra.get("prepare", "image"),
            python=machine.extra.get("python", "python3"),
            backend_module=BACKEND_MODULES[self.plan.spec.backend],
            workdir_base=machine.extra.get("workdir_base", "orchestrate"),
            requirements=machine.extra.get("requirements"),
        )
        return detail

    def push(self, node: _Node, bundle: Bundle, suite_bytes: bytes) -> str:
        machine, transport = node.machine, node.reach()
        base = shlex.quote(machine.extra.get("workdir_base", str(Path(node.workdir).parent.parent)))
        cache = f"{base}/payload/{bundle.content_hash[:16]}"
        out = check(transport, f"mkdir -p {cache} && cd {cache} && pwd && [ -f .complete ] && echo cached || true",
                    what=f"looking for the payload on {machine.id}")
        lines = out.decode().split()
        node.payload_dir = lines[0]
        transport.put_bytes(suite_bytes, f"{node.workdir}/{SUITE_FILE}")
        if lines[1:] == ["cached"]:
            return f"payload {bundle.content_hash[:12]} already there, not sent"
        archive = f"{node.workdir}/{BUNDLE_FILE}"
        transport.put_bytes(
            bundle.archive, archive, progress=lambda sent, total: self.ctx.reporter.upload(machine.id, sent, total)
        )
        check(
            transport,
            f"{shlex.quote(node.python)} -c {shlex.quote(SAFE_EXTRACT)} {shlex.quote(archive)} "
            f"{shlex.quote(node.payload_dir)} && rm -f {shlex.quote(archive)} && touch "
            f"{shlex.quote(node.payload_dir)}/.complete",
            what=f"unpacking the payload on {machine.id}",
        )
        return f"{bundle.files} files, {len(bundle.archive)} bytes, sha256 {bundle.content_hash[:12]}"

    def execute(self, node: _Node, worker_index: int) -> str:
        machine, transport = node.machine, node.reach()
        node.process = DetachedProcess(transport, node.workdir)
        env = {
            "PYTHONPATH": node.payload_dir,
            "PYTHONUNBUFFERED": "1",
            "KERAS_BACKEND": self.plan.spec.backend,
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        if self.plan.spec.multi_node and len(self.nodes) > 1:
            env["TF_CONFIG"] = tf_config(self.machines, worker_index, self.plan.spec.multi_node_port)
        argv = [node.python, "-m", "keras_bench", "--suite", SUITE_FILE, "--out", RESULTS_FILE]
        pgid = node.process.start(argv, env)
        prefix = f"[{machine.id}] " if len(self.nodes) > 1 else ""
        exit_code = follow(
            node.process,
            timeout_s=self.plan.spec.timeout_s,
            on_output=lambda text: self.ctx.reporter.output(
                "".join(prefix + line for line in text.splitlines(keepends=True)) if prefix else text
            ),
            poll_interval_s=self.ctx.poll_interval_s,
            clock=self.ctx.clock,
            sleep=self.ctx.sleep,
            cancelled=self.cancel.is_set,
        )
        if exit_code != 0:
            raise PayloadFailed(f"the payload exited with code {exit_code}")
        return f"process group {pgid} exited with code 0"

    def run_payload(self) -> None:
        self.store.set_state(self.run_id, "running")
        self.marks.execute_start = self.ctx.clock()
        index = {id(node): i for i, node in enumerate(self.nodes)}
        try:
            self.on_every_node("execute", lambda node: self.execute(node, index[id(node)]))
        finally:
            self.marks.execute_end = self.ctx.clock()

    def collect(self) -> None:
        """Fetches results documents and log tails: after success, failure or interrupt alike."""
        started = [n for n in self.nodes if n.process is not None and not n.collected]
        if not started:
            return

        def work(node: _Node) -> str:
            assert node.process is not None
            node.collected = True
            node.log_tail = node.process.log_tail()
            raw = node.process.read_file(RESULTS_FILE)
            if raw is None:
                raise PayloadFailed("no results document")
            document = parse_results(raw)
            if document.get("run_id") != self.run_id:
                raise PayloadFailed(
                    f"the results document belongs to run {document.get('run_id')!r}, not {self.run_id!r}"
                )
            node.results = document
            return f"{len(document['samples'])} samples, {len(document['errors'])} payload errors"

        nodes, self.nodes = self.nodes, started
        try:
            self.on_every_node("collect", work)
        finally:
            self.nodes = nodes

    def stop_payloads(self) -> None:
        """Kills every payload that may still run (interrupt, failure on another node)."""
        self.cancel.set()
        for node in self.nodes:
            if node.process is not None:
                with suppress(OrchestrateError):
                    node.process.kill()

    def teardown(self) -> None:
        if not self.machines or self.provider is None:
            return
        with self.step("teardown") as note:
            if self.marks.execute_end is None or self.cancel.is_set():
                self.stop_payloads()
            for node in self.nodes:
                if node.transport is not None:
                    node.transport.close()
            if self.plan.spec.keep:
                note["outcome"] = "skipped"
                note["detail"] = "--keep: left " + ", ".join(f"{m.id}:{m.workdir}" for m in self.machines)
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
            per_hour = sum(
                float(m.extra["price_per_hour"]) if "price_per_hour" in m.extra else self.plan.offer.price_per_hour
                for m in self.machines
            )
            lines = price_run(
                setup_s=start_exec - marks.launch,
                compute_s=end_exec - start_exec,
                teardown_s=end - end_exec,
                price_per_hour=per_hour,
                rule=billing_rule(self.plan.offer.billing_rule),
            )
            total = sum(line.amount_usd for line in lines)
            note["detail"] = f"${total:.4f} at ${per_hour:g}/h for {len(self.machines)} machine(s) ({lines[0].rule})"
            return [asdict(line) for line in lines]


def tf_config(machines: Sequence[Machine], index: int, port: int) -> str:
    """Returns the TF_CONFIG of worker ``index``: every machine's private address, one port per worker.

    Ports differ per worker so that several workers on one address (loopback tests) do not collide.
    """
    workers = [f"{m.private_address or m.address}:{port + i}" for i, m in enumerate(machines)]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


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
                run.on_every_node("connect", run.connect)
                run.on_every_node("prepare", run.prepare)
                bundle = build_bundle()
                suite_bytes = json.dumps(
                    suite_document(plan.suite.name, run_id, plan.params), indent=2, sort_keys=True
                ).encode()
                run.on_every_node("push", lambda node: run.push(node, bundle, suite_bytes))
                run.run_payload()
                run.collect()
                if len(run.results) < len(run.nodes):
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
    if outcome.state != "succeeded":
        run.stop_payloads()
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
    results = run.results
    outcome.results = next(iter(results.values()), None)
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
        results=results or None,
        costs=costs,
    )
    ctx.store.end_event(event, "ok", outcome.state)
