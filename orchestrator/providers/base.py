"""The provider contract (DESIGN §2): how a machine comes to exist and goes away, nothing else.

A provider knows no store, no SSH session, no payload. What it needs from outside is injected: the rented
provider's leases come through a :class:`~orchestrator.machine.LeaseBook` (the store implements it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from orchestrator.machine import Capability, LaunchRequest, Machine


class Provider(Protocol):
    """How a machine comes to exist and goes away."""

    name: str
    capabilities: frozenset[Capability]

    def launch(self, request: LaunchRequest) -> list[Machine]:
        """Creates ``request.count`` machines of one placement and returns once they are reachable.

        All or nothing: on failure it raises (CapacityError / QuotaError with the scope that failed, AuthError,
        ProviderError) and whatever it created stays findable by :meth:`list_machines` for the sweep.
        """
        ...

    def terminate(self, run_id: str, machines: Sequence[Machine] = ()) -> None:
        """Makes the run's machines go away: the given ones and any found by tag; idempotent.

        A provider with :attr:`Capability.REUSED` (machines that outlive the run) gives back only the given
        machines when some are given, so that a machine kept after a failed clean-up stays held; given none, it
        sweeps every machine of the run.
        """
        ...

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        """Lists the machines this provider holds for Orchestrate (all runs, or one), by tag: finds orphans."""
        ...
