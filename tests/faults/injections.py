"""The fault matrix's table and its injections: which (provider, step, fault) cells exist and why the others are n/a,
the stand-in payload that says what it produced, a clock that simulates a minute, the sshd outage and cut, the
throttling storms of both clouds, signal delivery to the run's handlers, and the checks every cell makes.

Each injection is the cheapest one that is still real: the SSH cut SIGKILLs sshd's per-connection processes, the
outage stops a real sshd and starts it again on the same port with the same host key, disk full is the kernel's own
ENOSPC (the payload's results file is written through ``/dev/full``), throttling is the SDKs' own retry path fed
HTTP throttling answers, and the signals go through the lifecycle's real handlers.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.machine import Access
from orchestrator.remote.connect import Connector, _ssh_target, known_hosts_path
from orchestrator.remote.transport import LocalTransport, Transport
from orchestrator.store import Store
from tests.conftest import FAKE_MAIN_HEADER
from tests.store_sql import sql

# The matrix ------------------------------------------------------------------------------------------------------

PROVIDERS = ("local", "rented", "aws", "azure")
STEPS = ("provision", "connect", "prepare", "push", "execute", "collect", "teardown")
FAULTS = ("exception", "sigint", "sigterm", "sigkill", "ssh_cut", "sshd_gone", "payload_crash", "payload_hang",
          "disk_full", "capacity", "throttling")
SSH_PROVIDERS = ("rented", "aws", "azure")
CLOUDS = ("aws", "azure")

# What each fault is, and how the matrix makes it happen (for docs/reliability.md).
INJECTIONS: dict[str, str] = {
    "exception": "a RuntimeError (an unexpected type, as a bug would raise) once, inside the step: after the launch "
                 "returned (provision), before the run directory is made (connect), before the step's work (prepare, "
                 "collect), in the upload's progress callback (push), in the first poll after the payload wrote "
                 "results (execute), in the provider's terminate (teardown; then `orchestrate down RUN`)",
    "sigint": "SIGINT sent to the orchestrator's own process at the same points, through the lifecycle's handlers",
    "sigterm": "SIGTERM, as for SIGINT",
    "sigkill": "`orchestrate run` as a subprocess, SIGKILLed once its payload wrote results, then "
               "`orchestrate down --all` from a new process",
    "ssh_cut": "every per-connection sshd process of the machine SIGKILLed under the run (mid-upload for push)",
    "sshd_gone": "the machine's sshd stopped (listener and connections) and started again on the same port with the "
                 "same host key after 60 s of the run's SSH clock (injected, so the minute is simulated)",
    "payload_crash": "the payload exits 3 after writing its first sample",
    "payload_hang": "the payload sleeps forever after its first sample; the run's clock passes the 30 s timeout",
    "disk_full": "the payload's second results write goes through /dev/full: the kernel's ENOSPC",
    "capacity": "the first placement refused (AWS InsufficientInstanceCapacity in every zone of us-east-1; Azure "
                "AllocationFailed in the VM's operation, the VM left Failed; rented: the box leased by another "
                "live run); the run fails over to the second placement",
    "throttling": "every API request of the step answered with throttling twice before it is served (AWS "
                  "RequestLimitExceeded HTTP 503 through botocore's retries; ARM 429 + Retry-After through "
                  "azure-core's); the SDKs' retry sleeps are recorded, not slept",
}

# What a reader of the report should know about a cell that passes.
NOTES: dict[tuple[str, str, str], str] = {
    ("aws", "provision", "throttling"): "RunInstances goes out without botocore's retries (so that "
    "InsufficientInstanceCapacity fails over to the next zone at once); the provider retries RequestLimitExceeded "
    "itself, with jittered backoff (6 tries, at most 31 s, clouds.aws.retrying_throttled), so the storm is ridden out "
    "in the same zone",
    ("local", "teardown", "exception"): "teardown-step exceptions: the provider's terminate raises once; the run is "
    "recorded failed with cleanup_failed and the hint `orchestrate down RUN`, and the cell then runs that command "
    "(teardown.down_run) before looking for leftovers. The same holds for rented, aws and azure",
    ("local", "teardown", "sigint"): "SIGINT/SIGTERM during teardown are held back: teardown finishes and the run "
    "keeps the state it had (succeeded). The same holds for every provider",
}

_NO_SSH = "no SSH: the local machine is reached through /bin/sh"
_PAYLOAD_ONLY = "the payload runs only during execute"
_SIGKILL_ONCE = ("a SIGKILL needs an orchestrator process to kill and a new one for `down --all` (seconds each): the "
                 "matrix kills it once per provider, during execute, when the machine is up, reached, and holds "
                 "results; tests/e2e/test_run_azure.py kills one during connect")


def not_applicable(provider: str, step: str, fault: str) -> str | None:
    """Why the fault cannot happen at that step on that provider (n/a), or None when it can."""
    if fault in ("ssh_cut", "sshd_gone"):
        if provider not in SSH_PROVIDERS:
            return _NO_SSH
        return "no SSH before connect: provisioning only leases or launches" if step == "provision" else None
    if fault in ("payload_crash", "payload_hang", "disk_full"):
        return None if step == "execute" else _PAYLOAD_ONLY
    if fault == "capacity":
        if provider == "local":
            return "the local box is always there: a run only makes a directory on it"
        return None if step == "provision" else "capacity is asked for only at launch"
    if fault == "throttling":
        if provider not in CLOUDS:
            return "no provider API to throttle"
        return None if step in ("provision", "teardown") else "the step makes no provider API call"
    return None


def not_run(provider: str, step: str, fault: str) -> str | None:
    """Why a cell that could happen is left out of the matrix, or None when the matrix runs it."""
    return _SIGKILL_ONCE if fault == "sigkill" and step != "execute" else None


def cells(*, subprocess: bool) -> list[tuple[str, str, str]]:
    """The cells the matrix runs, (provider, step, fault): those run in-process, or those needing a subprocess."""
    return [(p, s, f) for p in PROVIDERS for s in STEPS for f in FAULTS
            if not_applicable(p, s, f) is None and not_run(p, s, f) is None and (f == "sigkill") == subprocess]


def cell_id(provider: str, step: str, fault: str) -> str:
    """The test id of a cell, e.g. ``aws-execute-sigterm``."""
    return f"{provider}-{step}-{fault}"


# The payload ------------------------------------------------------------------------------------------------------

# Writes a first sample and says so in the control directory; then, as its mode says, crashes, hangs, or waits for
# `release` and writes a second one. `produced` always holds how many samples the results file on the machine has.
PAYLOAD_BODY = '''
import pathlib
ctl = pathlib.Path(CTL)
mode = (ctl / "mode").read_text().strip()
def write_checked(samples):
    # As keras_bench writes its document: flushed and synced, then renamed; the temporary removed on error. (The
    # header's write() leaves closing to the garbage collector, which swallows a disk-full error.)
    doc = document(samples)
    try:
        with open(out + ".tmp", "w") as stream:
            json.dump(doc, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(out + ".tmp", out)
    except BaseException:
        os.unlink(out + ".tmp")
        raise
def produce(samples):
    write_checked(samples)
    (ctl / "produced.tmp").write_text(str(len(samples)))
    os.replace(ctl / "produced.tmp", ctl / "produced")
(ctl / "pids").mkdir(exist_ok=True)
(ctl / "pids" / str(os.getpid())).write_text(os.getcwd())
first = [sample("train_throughput", "images_per_sec", 50.0)]
produce(first)
(ctl / "partial.tmp").write_text(os.getcwd())
os.replace(ctl / "partial.tmp", ctl / "partial")
if mode == "crash":
    print("payload: crashing on purpose after one sample", flush=True)
    sys.exit(3)
while mode == "hang" or not (ctl / "release").exists():
    time.sleep(0.01)
produce(first + [sample("inference_throughput", "images_per_sec", 80.0)])
'''


@dataclass
class PayloadControl:
    """The control directory a cell shares with its stand-in payload."""

    directory: Path

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def main_code(self) -> str:
        """The payload's ``__main__``."""
        return FAKE_MAIN_HEADER + f"CTL = {str(self.directory)!r}\n" + PAYLOAD_BODY

    def set_mode(self, mode: str) -> None:
        """``normal``, ``crash`` or ``hang``."""
        (self.directory / "mode").write_text(mode)

    def release(self) -> None:
        """Lets a waiting payload write its second sample and exit 0."""
        (self.directory / "release").touch()

    @property
    def partial(self) -> bool:
        """Whether the payload has written its first sample."""
        return (self.directory / "partial").exists()

    @property
    def run_dir(self) -> Path:
        """The directory the payload runs in (once it has written its first sample)."""
        return Path((self.directory / "partial").read_text())

    @property
    def produced(self) -> int:
        """How many samples the results document on the machine holds (0: none written)."""
        path = self.directory / "produced"
        return int(path.read_text()) if path.exists() else 0

    def pids(self) -> list[int]:
        """Every payload process this cell started."""
        folder = self.directory / "pids"
        return sorted(int(p.name) for p in folder.iterdir()) if folder.is_dir() else []

    def fill_disk(self) -> None:
        """Makes the payload's next results write hit the kernel's ENOSPC: its temporary file becomes /dev/full."""
        os.symlink("/dev/full", self.run_dir / "results.json.tmp")


# Clocks, signals --------------------------------------------------------------------------------------------------


class SimulatedClock:
    """Monotonic time plus every second slept: a retry loop that sleeps a minute returns at once. Callbacks see each
    sleep (an outage ends from there)."""

    def __init__(self) -> None:
        self.skew = 0.0
        self.on_sleep: list[Callable[[], None]] = []

    def now(self) -> float:
        """Monotonic seconds, simulated sleeps included."""
        return time.monotonic() + self.skew

    def sleep(self, seconds: float) -> None:
        """Advances the clock instead of sleeping."""
        self.skew += max(0.0, seconds)
        for callback in list(self.on_sleep):
            callback()


def connector(clock: SimulatedClock) -> Connector:
    """``transport_to`` with the SSH transport's clock and sleep injected (its connect and reconnect backoff)."""

    def connect(access: Access, home: Path, connect_timeout_s: float) -> Transport:
        if access.via == "local":
            return LocalTransport()
        from orchestrator.remote.ssh import SSHTransport

        ssh = SSHTransport(_ssh_target(access), known_hosts=known_hosts_path(home), connect_timeout_s=connect_timeout_s,
                           clock=clock.now, sleep=clock.sleep)
        ssh.connect()
        transport: Transport = ssh
        return transport

    return connect


def deliver(signum: int) -> None:
    """Sends a signal to this process for the run's handlers; refuses when none is armed (it would end pytest)."""
    handler = signal.getsignal(signum)
    if not callable(handler) or handler is signal.default_int_handler:
        raise AssertionError(f"no run handler armed for {signal.Signals(signum).name}: {handler!r}")
    if threading.current_thread() is threading.main_thread():
        os.kill(os.getpid(), signum)
    else:
        signal.pthread_kill(threading.main_thread().ident or 0, signum)


# sshd: cut and outage ---------------------------------------------------------------------------------------------


@dataclass
class ServerSlot:
    """Where the machine's current sshd is kept (an outage replaces it with a restarted one)."""

    get: Callable[[], Any]
    put: Callable[[Any], None]


def cut(slot: ServerSlot) -> list[int]:
    """SIGKILLs every per-connection sshd process of the machine; returns their pids (none: nothing was cut)."""
    killed: list[int] = slot.get().cut_connections()
    return killed


@dataclass
class Outage:
    """The machine's sshd gone for ``down_for_s`` of the simulated clock, then back on the same port and host key."""

    slot: ServerSlot
    clock: SimulatedClock
    down_for_s: float = 60.0
    started: float | None = None
    lasted_s: float | None = None  # how long it was down, on the clock, once it is back
    restarts: int = 0

    def begin(self) -> None:
        """Stops the listener and cuts every connection (the machine's own processes keep running)."""
        server = self.slot.get()
        server.cut_connections()
        server.process.terminate()
        server.process.wait(timeout=10)
        server.cut_connections()
        self.started = self.clock.now()
        self.clock.on_sleep.append(self._tick)

    def _tick(self) -> None:
        if self.started is not None and self.lasted_s is None and self.clock.now() - self.started >= self.down_for_s:
            self.end()

    def end(self) -> None:
        """Starts sshd again (once); idempotent."""
        if self.started is None or self.lasted_s is not None:
            return
        from tests.integration.conftest import start_server

        self.lasted_s = self.clock.now() - self.started
        old = self.slot.get()
        self.restarts += 1
        directory = old.log_path.parent.with_name(f"{old.log_path.parent.name}-back-{time.monotonic_ns()}")
        self.slot.put(start_server(directory, old.client_key_path, old.host_key_path, port=old.port,
                                   authorized_key=old.client_key_path))


# Throttling storms ------------------------------------------------------------------------------------------------


@dataclass
class Storm:
    """While active, each distinct request is throttled ``per_request`` times before it is served."""

    per_request: int = 2
    active: bool = False
    throttled: int = 0
    slept_s: float = 0.0  # the SDK's retry sleeps, recorded instead of slept
    _seen: Counter[str] = field(default_factory=Counter)

    def hits(self, key: str) -> bool:
        """Whether this attempt of the request ``key`` is throttled."""
        if not self.active:
            return False
        attempt = self._seen[key]
        self._seen[key] += 1
        if attempt % (self.per_request + 1) < self.per_request:
            self.throttled += 1
            return True
        return False

    @contextmanager
    def raging(self) -> Iterator[None]:
        """The storm, for the duration of the block."""
        self.active = True
        try:
            yield
        finally:
            self.active = False

    def record_sleep(self, seconds: float) -> None:
        """The SDK's retry sleep."""
        self.slept_s += seconds


class _Body:
    """The raw body botocore reads a canned answer from."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


EC2_THROTTLED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code>'
                 b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault-matrix</RequestID>"
                 b"</Response>")


def ec2_throttle(storm: Callable[[], Storm]) -> Callable[..., Any]:
    """A ``before-send.ec2`` handler (register it first): EC2's throttling answer (HTTP 503 RequestLimitExceeded)
    while the current storm rages, which botocore's retry handler takes as EC2's answer.

    botocore calls every ``before-send`` handler and uses the first answer, so moto's would still execute the
    request: a throttled one is pointed at an address moto does not serve, as EC2 never executes a throttled call.
    """
    from botocore.awsrequest import AWSResponse

    def hook(request: Any, event_name: str = "", **_: Any) -> Any:
        if not storm().hits(f"{event_name} {request.body!r}"):
            return None
        url, request.url = request.url, "https://throttled.invalid/"
        return AWSResponse(url, 503, {"Content-Type": "text/xml"}, _Body(EC2_THROTTLED))

    return hook


def arm_throttle(fake: Any, storm: Storm) -> Callable[[str, str, bytes], tuple[int, dict[str, str], Any]]:
    """The ARM fake's request handler with 429 + ``Retry-After: 1`` while the storm rages."""
    from urllib.parse import urlsplit

    original = fake.handle

    def handle(method: str, target: str, raw: bytes) -> tuple[int, dict[str, str], Any]:
        if storm.hits(f"{method} {urlsplit(target).path.lower()}"):
            return 429, {"Retry-After": "1"}, {"error": {"code": "TooManyRequests",
                                                         "message": "The request is being throttled."}}
        result: tuple[int, dict[str, str], Any] = original(method, target, raw)
        return result

    return handle


# Checks -----------------------------------------------------------------------------------------------------------


class LostResults(AssertionError):
    """Samples the payload wrote before the fault are not in the store (a known-defect cell expects exactly this)."""



def process_alive(pid: int) -> bool:
    """Whether a process runs (a zombie, exited and not yet reaped, does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stored_samples(store: Store, run_id: str) -> int:
    """How many samples the store holds for the run."""
    return int(sql(store, "SELECT COUNT(*) FROM samples WHERE run_id=?", (run_id,))[0][0])


def cost_problems(store: Store, run_id: str) -> list[str]:
    """What is wrong with the run's cost lines: a machine the run launched without one, a negative amount, or nothing
    billed for a machine whose rule has a minimum at a price above zero."""
    from orchestrator.cost import billing_rule

    costs = store.costs(run_id)
    problems = [f"negative cost {row.amount_usd} for {row.machine_id}" for row in costs if row.amount_usd < 0]
    for row in store.machines(run_id):
        if row.machine_id is None:
            continue
        lines = [c for c in costs if c.machine_id == row.machine_id]
        if not lines:
            problems.append(f"no cost line for {row.machine_id}")
            continue
        placement = row.machine.placement if row.machine is not None else None
        if (placement is not None and placement.price_per_hour > 0
                and billing_rule(placement.billing_rule).minimum_s > 0
                and sum(c.amount_usd for c in lines) <= 0):
            problems.append(f"nothing billed for {row.machine_id} at ${placement.price_per_hour}/h")
    total = sum(c.amount_usd for c in costs)
    recorded = store.get_run(run_id).cost_usd or 0.0
    if abs(recorded - total) > 1e-9:
        problems.append(f"run cost {recorded} is not the sum of its lines {total}")
    return problems
