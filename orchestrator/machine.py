"""The types a provider hands to the core: placements, launch requests, machines and leases (DESIGN §2).

They live here, not in ``providers/``, so that remote code (transports, the payload session) can use a
:class:`Machine` without importing any provider. Everything the core reads is a typed field; ``extra`` holds
only what a provider itself reads back (STYLE 5). One :meth:`Machine.to_record` / :meth:`Machine.from_record`
pair is the only way a machine is written to and read from the store.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Protocol

# The providers a run may name (``--provider``); ``orchestrator.providers.PROVIDERS`` maps each to its code.
PROVIDER_NAMES: tuple[str, ...] = ("aws", "azure", "local", "rented")


class Capability(enum.StrEnum):
    """What a provider can do beyond launch/terminate; gaps are data, checked before calling."""

    SPOT = "spot"
    STOP = "stop"
    MULTI_NODE = "multi_node"
    # Machines outlive the run (rented boxes, the dev box): terminating only gives them back, so a machine whose
    # remote clean-up failed (a payload may still run there) is kept, not given to the next run.
    REUSED = "reused"


class MachineState(enum.StrEnum):
    """The one state enum; each provider maps its own strings to it in ``STATE_MAP``."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Placement:
    """One way to get the machines a run asks for, as ranked by :mod:`orchestrator.catalog.placement`.

    The provider does not choose: it launches exactly this, or raises CapacityError/QuotaError.
    """

    provider: str
    instance_type: str  # the provider's name for the machine size ("local" for the dev box, a box name for rented)
    region: str | None = None
    zone: str | None = None  # None: any zone of the region, the provider's choice
    spot: bool = False
    max_price: float | None = None  # USD per hour a spot request may pay; None: up to the on-demand price
    price_per_hour: float = 0.0  # USD per machine-hour the run is priced at
    billing_rule: str = "per_second"  # a key of orchestrator.cost.BILLING_RULES
    hosts: tuple[str, ...] = ()  # rented: the inventory boxes this placement may lease, in order of preference
    price_fixed: bool = False  # the user set the price: every machine is priced at it, not at its own
    image: str | None = None  # clouds: the image to boot (--image, the catalog row's, or the provider's default)
    # A spot machine's price as its cloud quoted it at launch (orchestrator.catalog.spot): who quoted it, the figure as
    # the cloud wrote it, and when it was set. "catalog": no quote came, the catalog's price stands.
    price_source: str = "catalog"
    price_quoted: str | None = None
    price_quoted_at: str | None = None

    def describe(self) -> str:
        """One line for the plan and the events: type, where, market and price."""
        where = "/".join(part for part in (self.region, self.zone) if part)
        market = "spot" if self.spot else "on-demand"
        text = f"{self.provider} {self.instance_type}"
        if where:
            text += f" in {where}"
        if self.provider not in ("local", "rented"):
            text += f" {market}"
        return f"{text}, ${self.price_per_hour:g}/h ({self.billing_rule})"


@dataclass(frozen=True)
class Access:
    """How to reach a machine: the local shell, or SSH with a pinned host key (optionally through a bastion)."""

    via: Literal["ssh", "local"] = "ssh"
    host: str = "localhost"
    port: int = 22
    user: str = ""
    key_path: str | None = None  # the private key that authenticates (per run for clouds, the inventory's for boxes)
    host_key: str | None = None  # pinned "ssh-ed25519 AAAA…" line or "SHA256:…" fingerprint
    trust_on_first_use: bool = False  # accept and pin an unknown key once (only where the inventory says so)
    bastion: Access | None = None  # reach the machine through this SSH host (ProxyJump); its key is pinned too

    def describe(self) -> str:
        """``user@host:port`` (and the jump host), for messages."""
        if self.via == "local":
            return "this machine"
        text = f"{self.user}@{self.host}:{self.port}"
        return f"{text} via {self.bastion.describe()}" if self.bastion else text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Access:
        """Reads what :func:`dataclasses.asdict` wrote."""
        bastion = data.get("bastion")
        return cls(**{**data, "bastion": cls.from_dict(bastion) if bastion else None})


@dataclass(frozen=True)
class Environment:
    """What the payload runs with on the machine."""

    prepare: Literal["image", "venv", "none"] = "image"  # image: Keras is there; venv: create one; none: trust it
    python: str = "python3"  # the interpreter with Keras (image), or the one that creates the venv (venv)
    workdir: str = "orchestrate"  # base directory: runs/, payload/ and venvs/ live under it
    requirements: tuple[str, ...] | None = None  # for venv; None means the payload extra's own list


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a provider needs to create machines for one attempt of one run."""

    run_id: str
    placement: Placement
    count: int = 1
    attempt: int = 1  # 1 for the first placement tried, 2 for the next after a capacity error, …
    ssh_public_key: str | None = None
    allowed_cidr: str | None = None  # who may reach port 22
    image: str | None = None
    user_data: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    wait_s: float = 0.0  # how long to wait for capacity (a busy rented box) before giving up
    # Where a provider tries several places for one attempt (the zones of a region): told of each, (where, outcome
    # "failed" or "ok", detail), so the run records every try as an event. Not part of the recorded request.
    on_try: Callable[[str, str, str], None] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Machine:
    """One machine a provider made (or lent) for a run."""

    run_id: str
    id: str  # the provider's own id (instance id, VM name, inventory box name, "localhost")
    provider: str
    placement: Placement  # what was launched, with this machine's own price
    access: Access
    environment: Environment
    run_dir: str  # the run's directory on the machine (relative paths are under the login user's home)
    launched_at: datetime  # when the provider created (or leased) it: billing starts here
    state: MachineState = MachineState.RUNNING
    private_address: str | None = None  # for multi-node training; defaults to the access host
    extra: dict[str, str] = field(default_factory=dict)  # provider-only details, read only by that provider

    @property
    def address(self) -> str:
        """Where training peers reach it (multi-node): the private address, else the access host."""
        return self.private_address or self.access.host

    def with_host_key(self, host_key: str) -> Machine:
        """The same machine with the host key seen at connect pinned (trust on first use)."""
        return replace(self, access=replace(self.access, host_key=host_key, trust_on_first_use=False))

    def to_record(self) -> dict[str, Any]:
        """Returns the machine as JSON-ready data (the store keeps it whole; :meth:`from_record` reads it)."""
        record = asdict(self)
        record["launched_at"] = self.launched_at.isoformat()
        record["state"] = self.state.value
        if self.environment.requirements is not None:
            record["environment"]["requirements"] = list(self.environment.requirements)
        record["placement"]["hosts"] = list(self.placement.hosts)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Machine:
        """Reads what :meth:`to_record` wrote."""
        environment = dict(record["environment"])
        if environment.get("requirements") is not None:
            environment["requirements"] = tuple(environment["requirements"])
        placement = dict(record["placement"])
        placement["hosts"] = tuple(placement.get("hosts") or ())
        return cls(
            run_id=record["run_id"],
            id=record["id"],
            provider=record["provider"],
            placement=Placement(**placement),
            access=Access.from_dict(record["access"]),
            environment=Environment(**environment),
            run_dir=record["run_dir"],
            launched_at=datetime.fromisoformat(record["launched_at"]),
            state=MachineState(record.get("state", "running")),
            private_address=record.get("private_address"),
            extra=dict(record.get("extra") or {}),
        )


class LeaseState(enum.StrEnum):
    """Why a box is held by another run."""

    ACTIVE = "active"  # its run is going on: wait for it
    ABANDONED = "abandoned"  # its orchestrator process is gone: `orchestrate down RUN` (or --reclaim) frees it
    LEFT = "left"  # its run ended without cleaning the box up: `orchestrate down RUN` frees it


@dataclass(frozen=True)
class LeaseHolder:
    """The run that holds a box, and whether it is still going on."""

    run_id: str
    state: LeaseState
    pid: int  # the orchestrator process of that run
    host: str  # the machine that orchestrator runs on


class LeaseBook(Protocol):
    """Who holds which rented box; taking a lease is atomic. The store implements it."""

    def acquire(self, box: str, run_id: str) -> LeaseHolder | None:
        """Takes the box for the run; returns None when taken, else the run that holds it."""
        ...

    def release(self, box: str, run_id: str) -> None:
        """Gives the box back, if this run holds it."""
        ...

    def held(self) -> dict[str, str]:
        """Returns the held leases: box → run id."""
        ...
