"""What the ARM fake (:mod:`tests.fakes.arm`) holds: the resource kinds it knows, its resources, its long-running
operations, the faults injected into it, and the error answer every layer of it raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# lower-case "namespace/type" → (namespace, type) as Azure spells them in ids and in the resource's "type".
KINDS: dict[str, tuple[str, str]] = {
    "microsoft.network/virtualnetworks": ("Microsoft.Network", "virtualNetworks"),
    "microsoft.network/networksecuritygroups": ("Microsoft.Network", "networkSecurityGroups"),
    "microsoft.network/publicipaddresses": ("Microsoft.Network", "publicIPAddresses"),
    "microsoft.network/networkinterfaces": ("Microsoft.Network", "networkInterfaces"),
    "microsoft.compute/virtualmachines": ("Microsoft.Compute", "virtualMachines"),
}
NAMESPACES = {kind: namespace for namespace, kind in KINDS.values()}
FAILABLE = ("resourceGroups", *(kind for _, kind in KINDS.values()))
# Nested collections whose items get an id, a type and a provisioning state of their own.
CHILDREN = {"virtualNetworks": "subnets", "networkSecurityGroups": "securityRules",
            "networkInterfaces": "ipConfigurations"}

Answer = tuple[int, dict[str, str], Any]  # (status, headers, JSON body or None)


class ArmError(Exception):
    """An ARM error answer: ``status`` with ``{"error": {"code": code, "message": message}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class Fault:
    """An error :meth:`ArmFake.fail` injects into the PUTs of one kind."""

    kind: str
    code: str
    status: int
    message: str
    in_operation: bool
    times: int | None  # how many more PUTs it refuses; None: all of them
    when: Callable[[dict[str, Any]], bool] | None


@dataclass
class Operation:
    """A long-running operation: a PUT of a resource, or a DELETE of a resource or a group."""

    id: str
    kind: str  # "resourceGroups", "virtualMachines", …
    name: str
    method: str
    target: str  # lower-case id of the resource, or lower-case name of the group
    started: float  # time.monotonic()
    deadline: float  # when it reaches its terminal state
    location: str  # lower-case location, for the operation's URL
    error: dict[str, str] | None = None  # set: the operation ends Failed with this error
    ended: float | None = None

    def view(self) -> dict[str, Any]:
        status = "InProgress" if self.ended is None else "Failed" if self.error else "Succeeded"
        return {"kind": self.kind, "name": self.name, "method": self.method, "started": self.started,
                "ended": self.ended, "status": status}


@dataclass
class Held:
    """A resource held by the fake; ``body`` is what GET returns (less the instance view)."""

    kind: str
    group: str  # lower-case
    body: dict[str, Any]
    operation: str  # id of the latest operation on it: only that one settles its state
    custom_data: str | None = None  # a VM's decoded osProfile.customData (Azure never returns it)


def now() -> str:
    """This moment as ARM writes times (ISO 8601, UTC)."""
    return datetime.now(UTC).isoformat()


def set_state(body: dict[str, Any], state: str) -> None:
    """Sets the resource's provisioning state, and that of its nested items (subnets, rules, IP configurations)."""
    properties = body.setdefault("properties", {})
    properties["provisioningState"] = state
    for child in properties.get(CHILDREN.get(body.get("type", "").split("/")[-1], ""), []):
        child.setdefault("properties", {})["provisioningState"] = state
