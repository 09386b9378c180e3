"""The fault matrix, in-process: every provider × lifecycle step × fault that can happen there (the SIGKILL cells,
which need an orchestrator process to kill, are in ``test_matrix_sigkill.py``).

Each cell runs a whole run through :func:`orchestrator.lifecycle.execute_plan` against the real provider (local;
rented boxes on a loopback sshd; AWS on moto; Azure on the ARM fake, each cloud machine played by a loopback sshd
with the run's injected host key) and a stand-in payload, injects its fault once at its step, and then checks what a
user would: no machine left, the run recorded as the fault implies, every sample the payload wrote before the fault
in the store, and a cost line for every machine launched.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from orchestrator.lifecycle import execute_plan
from orchestrator.machine import LaunchRequest, Machine, Placement
from orchestrator.plan import Plan
from orchestrator.remote import detached
from orchestrator.remote.session import Session
from orchestrator.run_steps import RunContext
from orchestrator.spec import RunSpec, load_suite
from orchestrator.store import Store, StoreLeases
from orchestrator.teardown import down_run
from tests.fakes.reporter import QuietReporter
from tests.faults.conftest import FACTS, Box
from tests.faults.injections import (
    Outage,
    PayloadControl,
    ServerSlot,
    SimulatedClock,
    Storm,
    arm_throttle,
    cell_id,
    cells,
    connector,
    cost_problems,
    cut,
    deliver,
    ec2_throttle,
    process_alive,
    stored_samples,
)

pytestmark = pytest.mark.slow

HANG_TIMEOUT_S = 30.0  # the spec's timeout in the hang cell; the run's clock jumps past it once the payload hangs
SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM}
AZURE_SIZE = "Standard_NC4as_T4_v3"


# What each provider is in a cell -----------------------------------------------------------------------------------


@dataclass
class Rig:
    """One provider as a cell runs it: the provider, the placements to try, where its machines' run directories
    are, its sshd (SSH providers), and what it still has of a run (its own listing and its fake's resources)."""

    provider: Any
    placements: tuple[Placement, ...]
    run_dirs: Path  # a run's directory on the machine is run_dirs / run_id
    slot: ServerSlot | None
    leftovers: Callable[[str], list[str]]
    storm: Storm = field(default_factory=Storm)


def _listing(provider: Any, run_id: str) -> list[str]:
    """What the provider's own listing still has of the run."""
    return [f"listed by the provider: {m.id}" for m in provider.list_machines(run_id=run_id)]


def local_rig(tmp_path: Path, home: Path, store: Store, request: pytest.FixtureRequest, fault: str) -> Rig:
    """The dev box: a run directory under the cell's home."""
    from orchestrator.providers.local import LocalProvider

    provider = LocalProvider(home)
    return Rig(provider, (Placement("local", "local", price_per_hour=0.5),), home / "machines", None,
               partial(_listing, provider))


def rented_rig(tmp_path: Path, home: Path, store: Store, request: pytest.FixtureRequest, fault: str) -> Rig:
    """Two inventory boxes on the module's sshd (work directories of the cell's own), leased through the store."""
    from orchestrator.inventory.model import Inventory
    from orchestrator.providers.rented import RentedProvider

    box: Box = request.getfixturevalue("rented_box")
    server = box.server
    hosts = [{"name": name, "host": server.host, "port": server.port, "user": server.user,
              "key_path": str(server.client_key_path), "host_key": server.host_key, "price": {"per_hour": 1.5},
              "python": sys.executable, "workdir": str(tmp_path / "box")} for name in ("box0", "box1")]
    inventory = Inventory.model_validate({"hosts": hosts})
    provider = RentedProvider(home, leases=StoreLeases(store), inventory=inventory, sleep=lambda _: None)

    def leftovers(run_id: str) -> list[str]:
        held = [f"lease on {b}" for b, holder in store.leases().items() if holder == run_id]
        return held + _listing(provider, run_id)

    placements = tuple(Placement("rented", name, price_per_hour=1.5, hosts=(name,)) for name in ("box0", "box1"))
    return Rig(provider, placements if fault == "capacity" else placements[:1], tmp_path / "box" / "runs", box.slot,
               leftovers)


class AwsAccount:
    """moto's account as the cells reach it: one EC2 client per (region, retries) for the whole module (a client
    costs a third of a second to make), with the cell's throttling storm and capacity refusal hooked in."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str | None, bool], Any] = {}
        self.storm = Storm()
        self.refuse_east = False

    def client(self, region: str | None, retries: bool = True) -> Any:
        from orchestrator.clouds import aws

        if (region, retries) not in self.clients:
            client = (aws.client if retries else aws.client_without_retries)("ec2", region=region)
            client.meta.events.register_first("before-send.ec2", ec2_throttle(lambda: self.storm))
            client.meta.events.register("before-call.ec2.RunInstances", self._refuse)
            self.clients[(region, retries)] = client
        return self.clients[(region, retries)]

    def _refuse(self, params: dict[str, Any], **_: Any) -> Any:
        from tests.fakes.aws import refusal

        zone = str(params["body"].get("Placement.AvailabilityZone", ""))
        if self.refuse_east and zone.startswith("us-east-1"):
            return refusal("InsufficientInstanceCapacity", f"injected: no capacity in {zone}")
        return None


@pytest.fixture(scope="module")
def aws_account(moto_module: None) -> AwsAccount:
    """The module's EC2 clients."""
    return AwsAccount()


def aws_rig(tmp_path: Path, home: Path, store: Store, request: pytest.FixtureRequest, fault: str) -> Rig:
    """The AWS provider on the module's moto account; each instance played by a loopback sshd (a Deep Learning AMI
    whose Python is this venv's)."""
    from orchestrator.providers.aws import network
    from orchestrator.providers.aws.instance import AwsProvider
    from tests.fakes.aws import IMAGE, LoopbackBox, user_data_text
    from tests.integration.conftest import start_server

    account: AwsAccount = request.getfixturevalue("aws_account")
    account.storm, account.refuse_east = Storm(), fault == "capacity"

    class Box(LoopbackBox):
        """Reads the user-data back through the module's client."""

        def cloud_config(self, machine: Machine) -> str | None:
            return user_data_text(account.client(machine.placement.region), machine.id)

    provider = Box(AwsProvider(home, sleep=lambda _: None, client_factory=account.client), tmp_path / "boxes",
                   start_server)

    def leftovers(run_id: str) -> list[str]:
        found = _listing(provider, run_id)
        for region in ("us-east-1", "us-west-2"):
            ec2 = account.client(region)
            pages = ec2.describe_instances(Filters=[{"Name": "tag:orchestrate:run-id", "Values": [run_id]}])
            found += [f"instance {i['InstanceId']} {i['State']['Name']}" for r in pages["Reservations"]
                      for i in r["Instances"] if i["State"]["Name"] != "terminated"]
            found += [f"security group {g['GroupName']}" for g in ec2.describe_security_groups()["SecurityGroups"]
                      if run_id in g["GroupName"]]
            found += [f"key pair {k['KeyName']}" for k in ec2.describe_key_pairs()["KeyPairs"]
                      if run_id in k["KeyName"]]
        if network.key_dir(home, run_id).exists():
            found.append("the run's private key file")
        return found

    east = Placement("aws", "g4dn.xlarge", region="us-east-1", price_per_hour=0.526, billing_rule="aws_linux",
                     image=IMAGE)
    placements = (east, Placement("aws", "g4dn.xlarge", region="us-west-2", price_per_hour=0.6,
                                  billing_rule="aws_linux", image=IMAGE))
    return Rig(provider, placements if fault == "capacity" else placements[:1], tmp_path / "boxes" / "box" / "runs",
               ServerSlot(lambda: provider.servers[-1], lambda s: provider.servers.__setitem__(-1, s)), leftovers,
               storm=account.storm)


def azure_rig(tmp_path: Path, home: Path, store: Store, request: pytest.FixtureRequest, fault: str) -> Rig:
    """The Azure provider on the module's ARM fake; each VM played by a loopback sshd. The capacity cell's fault
    (AllocationFailed in eastus, once) and the throttling cell's storm are set on the fake here."""
    from orchestrator.providers.keys import key_dir
    from tests.fakes.azure import LoopbackAzureBox, provider_for
    from tests.integration.conftest import start_server

    arm = request.getfixturevalue("arm_module")
    storm = Storm()
    provider = LoopbackAzureBox(provider_for(arm, home), arm, tmp_path / "boxes", start_server)
    if fault == "capacity":
        arm.fail("virtualMachines", "AllocationFailed", in_operation=True, times=1,
                 when=lambda body: body.get("location") == "eastus")
    if fault == "throttling":
        from azure.core.pipeline.transport import HttpTransport

        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setattr(arm, "handle", arm_throttle(arm, storm))
        monkeypatch.setattr(HttpTransport, "sleep", lambda self, seconds: storm.record_sleep(seconds))

    def leftovers(run_id: str) -> list[str]:
        found = _listing(provider, run_id) + [f"resource group {g['name']}" for g in arm.groups()
                                              if run_id in g["name"]]
        return found + (["the run's private key file"] if key_dir(home, run_id).exists() else [])

    placements = tuple(Placement("azure", AZURE_SIZE, region=region, price_per_hour=price,
                                 billing_rule="per_minute_full") for region, price in (("eastus", 0.526),
                                                                                         ("westus2", 0.6)))
    return Rig(provider, placements if fault == "capacity" else placements[:1], tmp_path / "boxes" / "box" / "runs",
               ServerSlot(lambda: provider.servers[-1], lambda s: provider.servers.__setitem__(-1, s)), leftovers,
               storm=storm)


CELLS = cells(subprocess=False)
RIGS = {"local": local_rig, "rented": rented_rig, "aws": aws_rig, "azure": azure_rig}


# What each cell expects ----------------------------------------------------------------------------------------------


def expected(provider: str, step: str, fault: str) -> tuple[str, str]:
    """The run's recorded state, and a phrase its error must hold ("" for none)."""
    if fault == "exception":
        return "failed", f"injected failure in {step}"
    if fault in SIGNALS:
        # Teardown holds signals back so that no machine is left: the run ends as it was going to.
        return ("succeeded", "") if step == "teardown" else ("interrupted", fault.upper())
    if fault == "payload_crash":
        return "failed", "the payload exited with code 3"
    if fault == "payload_hang":
        return "failed", f"ran past the run timeout of {HANG_TIMEOUT_S:g} s"
    if fault == "disk_full":
        return "failed", "the payload exited with code 1"
    return "succeeded", ""  # an SSH cut or outage, capacity elsewhere, throttling the SDK rides out


# Running a cell ----------------------------------------------------------------------------------------------------


class Injector:
    """Fires the cell's fault once, at its step."""

    def __init__(self, fault: str, step: str, rig: Rig, clock: SimulatedClock) -> None:
        self.fault = fault
        self.step = step
        self.rig = rig
        self.fired = False
        self.cut_pids: list[int] = []
        self.outage = Outage(rig.slot, clock) if rig.slot is not None else None

    def fire(self) -> None:
        """The fault, unless it fired already; an exception is raised to the caller."""
        if self.fired:
            return
        self.fired = True
        if self.fault == "exception":
            raise RuntimeError(f"injected failure in {self.step}")
        if self.fault in SIGNALS:
            deliver(SIGNALS[self.fault])
        elif self.fault == "ssh_cut":
            assert self.rig.slot is not None
            self.cut_pids = cut(self.rig.slot)
        elif self.fault == "sshd_gone":
            assert self.outage is not None
            self.outage.begin()


class Reporter(QuietReporter):
    """Quiet, but the push step's faults fire from the upload's progress (mid-transfer)."""

    def __init__(self, on_upload: Callable[[], None] | None) -> None:
        self.on_upload = on_upload

    def upload(self, host: str, sent: int, total: int) -> None:
        """Upload progress: the push step's injection point."""
        if self.on_upload is not None:
            self.on_upload()


def arm_injection(monkeypatch: pytest.MonkeyPatch, injector: Injector, rig: Rig, ctl: PayloadControl,
                  step: str, fault: str) -> Callable[[], None] | None:
    """Hooks the injector into the step; returns the upload callback for the push step."""
    if fault in ("payload_crash", "payload_hang", "capacity"):
        return None
    if fault == "disk_full":
        real_poll = detached.DetachedProcess.poll

        def poll_filling(self: detached.DetachedProcess) -> detached.PollResult:
            if ctl.partial and not injector.fired:
                injector.fired = True
                ctl.fill_disk()
                ctl.release()
            return real_poll(self)

        monkeypatch.setattr(detached.DetachedProcess, "poll", poll_filling)
        return None
    if fault == "throttling":
        name = "launch" if step == "provision" else "terminate"
        real = getattr(rig.provider, name)

        def in_storm(*args: Any, **kwargs: Any) -> Any:
            with rig.storm.raging():
                return real(*args, **kwargs)

        monkeypatch.setattr(rig.provider, name, in_storm)
        return None
    if step == "provision":
        launch = rig.provider.launch

        def launch_then_fault(request: LaunchRequest) -> list[Machine]:
            machines: list[Machine] = launch(request)
            injector.fire()
            return machines

        monkeypatch.setattr(rig.provider, "launch", launch_then_fault)
    elif step in ("connect", "prepare", "collect"):
        method = {"connect": "open_run_dir", "prepare": "prepare", "collect": "collect"}[step]
        real_method = getattr(Session, method)

        def fault_first(self: Session, *args: Any, **kwargs: Any) -> Any:
            injector.fire()
            return real_method(self, *args, **kwargs)

        monkeypatch.setattr(Session, method, fault_first)
    elif step == "push":
        return injector.fire
    elif step == "execute":
        real_poll = detached.DetachedProcess.poll

        def poll_with_fault(self: detached.DetachedProcess) -> detached.PollResult:
            if ctl.partial and not injector.fired:
                injector.fire()
                ctl.release()  # the run goes on (an SSH fault): let the payload finish
            return real_poll(self)

        monkeypatch.setattr(detached.DetachedProcess, "poll", poll_with_fault)
    elif step == "teardown" and fault in ("ssh_cut", "sshd_gone"):
        import orchestrator.teardown as teardown

        real_clean_up = teardown.clean_up

        def clean_up_with_fault(transport: Any, run_dir: str) -> None:
            injector.fire()
            real_clean_up(transport, run_dir)

        monkeypatch.setattr(teardown, "clean_up", clean_up_with_fault)
    elif step == "teardown":
        terminate = rig.provider.terminate

        def terminate_with_fault(run_id: str, machines: Any = ()) -> None:
            injector.fire()
            terminate(run_id, machines)

        monkeypatch.setattr(rig.provider, "terminate", terminate_with_fault)
    return None


def run_cell(cell: tuple[str, str, str], tmp_path: Path, request: pytest.FixtureRequest,
             monkeypatch: pytest.MonkeyPatch, fake_payload: Callable[[str], Path]) -> dict[str, Any]:
    """Runs one cell and returns what it measured (the test asserts on it)."""
    provider_name, step, fault = cell
    home = tmp_path / "home"
    store = Store(home)
    ctl = PayloadControl(tmp_path / "ctl")
    ctl.set_mode({"payload_crash": "crash", "payload_hang": "hang"}.get(fault, "normal"))
    if step != "execute":
        ctl.release()
    monkeypatch.setenv("ORCHESTRATE_PAYLOAD_DIR", str(fake_payload(ctl.main_code())))
    rig = RIGS[provider_name](tmp_path, home, store, request, fault)
    if hasattr(rig.provider, "stop"):
        request.addfinalizer(rig.provider.stop)  # the loopback sshd servers that played its machines
    other_run = None
    if fault == "capacity" and provider_name == "rented":
        other_run = "r-20000101-000000-beef"  # a live run (this process) holds box0
        store.create_run(other_run, provider="rented", suite="smoke", name=None, spec={})
        assert store.acquire_lease("box0", other_run) is None
    if fault == "throttling" and provider_name == "aws":
        import types

        import botocore.endpoint

        monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=rig.storm.record_sleep))
    clock = SimulatedClock()
    injector = Injector(fault, step, rig, clock)
    on_upload = arm_injection(monkeypatch, injector, rig, ctl, step, fault)
    spec = RunSpec.model_validate({"provider": provider_name,
                                   "timeout_s": HANG_TIMEOUT_S if fault == "payload_hang" else 600.0})
    suite = load_suite("smoke")
    plan = Plan(spec, suite, dict(suite.params), rig.placements, 1, ())
    hung = SimulatedClock()

    def run_clock() -> float:
        """While the payload hangs, every look at the clock finds ten more seconds gone."""
        if fault == "payload_hang" and ctl.partial:
            hung.sleep(10.0)
        return hung.now()

    ctx = RunContext(store=store, home=home, reporter=Reporter(on_upload), clock=run_clock, poll_interval_s=0.02,
                     provider_factory=lambda name: rig.provider, connect=connector(clock),
                     allowed_cidr="127.0.0.1/32")
    run_id = f"r-20260101-000000-{CELLS.index(cell):04x}"  # unique in the module's shared fakes
    bug: str | None = None
    try:
        execute_plan(plan, ctx, run_id=run_id)
    except RuntimeError as error:  # an unexpected exception propagates after teardown and recording
        if "injected failure" not in str(error):
            raise
        bug = str(error)
    finally:
        if injector.outage is not None:
            injector.outage.end()
    facts: dict[str, Any] = {"bug_raised": bug, "fired": injector.fired}
    recovered = store.machines(run_id, live_only=True)
    if recovered and fault == "exception" and step == "teardown":
        # The run said what to do: `orchestrate down RUN` retries the teardown.
        down_run(store, run_id, providers=lambda name: rig.provider, connect=ctx.connect, home=home)
        facts["recovered_by"] = "orchestrate down RUN"
    run = store.get_run(run_id)
    leaks = rig.leftovers(run_id)
    leaks += [f"store holds {row.machine_id} as {row.state}" for row in store.machines(run_id, live_only=True)]
    if (rig.run_dirs / run_id).exists():
        leaks.append(f"run directory {rig.run_dirs / run_id}")
    leaks += [f"payload process {pid}" for pid in ctl.pids() if process_alive(pid)]
    produced, stored = ctl.produced, stored_samples(store, run_id)
    facts.update(state=run.state, error=run.error or "", leaks=leaks, produced=produced, stored=stored,
                 lost=max(0, produced - stored), costs=cost_problems(store, run_id), log_tail=run.log_tail or "",
                 launches=[e.outcome for e in store.events(run_id) if e.step == "launch"],
                 throttled=rig.storm.throttled, cut=injector.cut_pids,
                 outage_s=injector.outage.lasted_s if injector.outage is not None else None)
    if other_run is not None:
        facts["other_lease"] = store.leases().get("box0")
        store.release_lease("box0", other_run)
    store.close()
    return facts


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: cell_id(*c))
def test_fault(cell: tuple[str, str, str], tmp_path: Path, request: pytest.FixtureRequest,
               monkeypatch: pytest.MonkeyPatch, fake_payload: Callable[[str], Path]) -> None:
    """A run with the cell's fault leaves no machine, is recorded as the fault implies, keeps every sample written
    before the fault, and prices every machine it launched."""
    provider, step, fault = cell
    facts = run_cell(cell, tmp_path, request, monkeypatch, fake_payload)
    state, phrase = expected(provider, step, fault)
    problems = []
    if facts["leaks"]:
        problems.append(f"left behind: {facts['leaks']}")
    if facts["state"] != state or phrase not in facts["error"]:
        problems.append(f"recorded {facts['state']!r} ({facts['error']!r}); expected {state!r} with {phrase!r}")
    if facts["lost"]:
        problems.append(f"{facts['lost']} of {facts['produced']} samples written before the fault not in the store")
    if facts["costs"]:
        problems.append(f"cost: {facts['costs']}")
    problems += _injection_problems(cell, facts)
    request.node.user_properties.append((FACTS, {**facts, "problems": "; ".join(problems)}))
    assert not problems, "; ".join(problems)


def _injection_problems(cell: tuple[str, str, str], facts: dict[str, Any]) -> list[str]:
    """Whether the fault really happened (a cell whose injection never fired proves nothing)."""
    provider, step, fault = cell
    problems = []
    if fault in ("exception", *SIGNALS, "ssh_cut", "sshd_gone", "disk_full") and not facts["fired"]:
        problems.append("the fault never fired")
    if fault == "exception" and step != "teardown" and not facts["bug_raised"]:
        problems.append("the unexpected exception did not propagate from execute_plan after recording")
    if fault == "exception" and step == "teardown" and "recovered_by" not in facts:
        problems.append("the failed terminate left nothing recorded as cleanup_failed for `orchestrate down`")
    if fault == "ssh_cut" and not facts["cut"]:
        problems.append("no SSH connection was cut")
    if fault == "sshd_gone" and (facts["outage_s"] is None or facts["outage_s"] < 60):
        problems.append(f"sshd was not gone for a minute of the run's clock (back after {facts['outage_s']} s)")
    if fault == "disk_full" and "No space left on device" not in facts["log_tail"]:
        problems.append("the payload's log does not show ENOSPC")
    if fault == "capacity" and facts["launches"] != ["failed", "ok"]:
        problems.append(f"launch events {facts['launches']}, expected a failed attempt then one that worked")
    if fault == "capacity" and provider == "rented" and facts.get("other_lease") != "r-20000101-000000-beef":
        problems.append("the other run lost its lease on box0")
    if fault == "throttling" and not facts["throttled"]:
        problems.append("nothing was throttled")
    if fault in ("payload_crash", "payload_hang", "disk_full") and facts["produced"] < 1:
        problems.append("the payload wrote nothing before the fault")
    return problems
