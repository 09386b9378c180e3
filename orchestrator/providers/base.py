"""The provider contract (DESIGN §2): how a machine comes to exist and goes away, nothing else.

A provider knows no store, no SSH session, no payload. What it needs from outside is injected: the rented
provider's leases come through a :class:`~orchestrator.machine.LeaseBook` (the store implements it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class SpotQuote:
    """A spot price a cloud quoted for a machine at launch."""

    text: str  # as the cloud wrote it
    price: float  # USD per hour
    at: str  # ISO time the price was set (or read)
    source: str  # who quoted it: "DescribeSpotPriceHistory", "Azure Retail Prices API"


def at_spot_price(machine: Machine, quote: SpotQuote | None) -> Machine:
    """The machine priced at the quote (unless the user fixed its price), the quote recorded in ``extra``; without a
    quote it keeps the catalog's price and ``extra["spot_price_source"]`` says ``catalog`` (a launch never fails for
    its price)."""
    if quote is None:
        return replace(machine, extra={**machine.extra, "spot_price_source": "catalog"})
    placement = machine.placement if machine.placement.price_fixed else replace(
        machine.placement, price_per_hour=quote.price)
    return replace(machine, placement=placement, extra={
        **machine.extra, "spot_price": quote.text, "spot_price_at": quote.at, "spot_price_source": quote.source})
