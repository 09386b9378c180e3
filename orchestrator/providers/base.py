"""The provider contract (DESIGN §2): how a machine comes to exist and goes away, nothing else."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class Capability(enum.StrEnum):
    """What a provider can do beyond launch/terminate; gaps are data, checked before calling."""

    SPOT = "spot"
    STOP = "stop"
    MULTI_NODE = "multi_node"


class MachineState(enum.StrEnum):
    """The one state enum; each provider maps its own strings to it in ``STATE_MAP``."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Offer:
    """What to launch, as decided by the catalog (the provider does not choose)."""

    instance_type: str
    region: str | None = None
    spot: bool = False
    price_per_hour: float = 0.0  # USD; what the run is priced at
    billing_rule: str = "per_second"  # a key of orchestrator.cost.BILLING_RULES


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a provider needs to create machines for one run."""

    run_id: str
    offer: Offer
    count: int = 1
    ssh_public_key: str | None = None
    allowed_cidr: str | None = None  # who may reach port 22
    image: str | None = None
    user_data: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    wait_s: float = 0.0  # how long to wait for capacity (a busy rented box) before giving up


@dataclass(frozen=True)
class Machine:
    """One machine a provider made (or lent) for a run."""

    id: str  # the provider's own id (instance id, VM name, run directory name)
    provider: str
    address: str  # where to connect; "localhost" for the local provider
    port: int
    user: str
    workdir: str  # where runs live on the machine
    launched_at: datetime
    host_key: str | None = None  # "<type> <base64>" to pin, when the provider reports one
    private_address: str | None = None  # for multi-node training
    state: MachineState = MachineState.RUNNING
    extra: dict[str, str] = field(default_factory=dict)  # provider-only details


class Provider(Protocol):
    """How a machine comes to exist and goes away."""

    name: str
    capabilities: frozenset[Capability]

    def launch(self, request: LaunchRequest) -> list[Machine]:
        """Creates ``request.count`` machines and returns once they are reachable, or raises a ProviderError."""
        ...

    def terminate(self, machines: Sequence[Machine]) -> None:
        """Makes the machines go away. Idempotent: an absent machine is not an error."""
        ...

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        """Lists the machines this provider holds for Orchestrate (all runs, or one), to find orphans."""
        ...
