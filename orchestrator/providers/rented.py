"""Rented bare-metal boxes and owned dev boxes, reached over SSH and listed in the inventory.

A box "comes to exist" for a run by taking its lease, so two runs never share it; it "goes away" when the lease
is given back. The leases come through an injected :class:`~orchestrator.machine.LeaseBook` (the store);
stopping a payload and removing the run directory on the box is the run's remote clean-up, done before the lease
is given back — never here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.errors import BoxHeld, CapacityError, ProviderError
from orchestrator.inventory.model import Inventory, InventoryHost, inventory_path, load_inventory
from orchestrator.machine import (
    Capability,
    LaunchRequest,
    LeaseBook,
    LeaseHolder,
    LeaseState,
    Machine,
    MachineState,
    Placement,
)

STATE_MAP = {"leased": MachineState.RUNNING, "released": MachineState.TERMINATED}
LEASE_POLL_S = 1.0


def machine_for(host: InventoryHost, run_id: str, placement: Placement | None = None) -> Machine:
    """Returns the Machine an inventory box is for one run, priced at the box's own price."""
    base = placement or Placement(provider="rented", instance_type=host.name)
    price = base.price_per_hour if base.price_fixed else host.price.usd_per_hour()
    return Machine(
        run_id=run_id, id=host.name, provider="rented",
        placement=replace(base, instance_type=host.name, price_per_hour=price, hosts=()),
        access=host.access(), environment=host.environment(),
        run_dir=f"{host.workdir.rstrip('/')}/runs/{run_id}", launched_at=datetime.now(UTC),
        private_address=host.private_address or host.host,
    )


class RentedProvider:
    """Boxes from the inventory, leased one run at a time.

    Args:
        home: the Orchestrate home (the default inventory).
        leases: who holds which box (the store implements it).
        inventory: an already-loaded inventory; by default read from :func:`inventory_path`.
        clock: monotonic seconds (injected in tests).
        sleep: how to wait between lease attempts (injected in tests).
    """

    name = "rented"
    capabilities: frozenset[Capability] = frozenset({Capability.MULTI_NODE, Capability.REUSED})

    def __init__(
        self,
        home: Path,
        leases: LeaseBook | None = None,
        inventory: Inventory | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.home = home
        self._leases = leases
        self._inventory = inventory
        self.clock = clock
        self.sleep = sleep

    @property
    def inventory(self) -> Inventory:
        """The inventory, read on first use."""
        if self._inventory is None:
            self._inventory = load_inventory(inventory_path(self.home))
        return self._inventory

    @property
    def leases(self) -> LeaseBook:
        """The lease book (required for launch, terminate and listing)."""
        if self._leases is None:
            raise ProviderError("the rented provider was made without a lease book")
        return self._leases

    def launch(self, request: LaunchRequest) -> list[Machine]:
        """Leases ``request.count`` of the placement's boxes, waiting up to ``request.wait_s`` for busy ones.

        Raises:
            BoxHeld: too few boxes are free because runs that ended or died still hold them; names them.
            CapacityError: not enough boxes became free in time; names the runs that hold them.
        """
        by_name = {host.name: host for host in self.inventory.hosts}
        missing = [name for name in request.placement.hosts if name not in by_name]
        if missing:
            raise ProviderError(f"box {missing[0]!r} is no longer in the inventory {inventory_path(self.home)}")
        candidates = [by_name[name] for name in request.placement.hosts] or list(self.inventory.hosts)
        need = request.count
        held: list[InventoryHost] = []
        deadline = self.clock() + request.wait_s
        try:
            while True:
                holders: dict[str, LeaseHolder] = {}
                for host in candidates:
                    if len(held) == need or host in held:
                        continue
                    holder = self.leases.acquire(host.name, request.run_id)
                    if holder is None:
                        held.append(host)
                    else:
                        holders[host.name] = holder
                if len(held) == need:
                    return [machine_for(host, request.run_id, request.placement) for host in held]
                stuck = {name: h for name, h in holders.items() if h.state != LeaseState.ACTIVE}
                if len(candidates) - len(stuck) < need:
                    raise BoxHeld(stuck)
                if self.clock() >= deadline:
                    in_use = ", ".join(f"{name} (run {h.run_id})" for name, h in sorted(holders.items()))
                    raise CapacityError(
                        f"no free box after waiting {request.wait_s:g} s: in use: {in_use}",
                        hint="wait for those runs, or raise --lease-wait",
                    )
                self.sleep(LEASE_POLL_S)
        except BaseException:
            for host in held:
                self.leases.release(host.name, request.run_id)
            raise

    def terminate(self, run_id: str, machines: Sequence[Machine] = ()) -> None:
        """Gives back the leases of the given boxes; given none, every box the run holds (the sweep by tag).

        A box is not given back unless named or swept: one whose clean-up failed stays held by its run.
        """
        boxes = [m.id for m in machines] or [box for box, holder in self.leases.held().items() if holder == run_id]
        for box in sorted(set(boxes)):
            self.leases.release(box, run_id)

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        """Lists the boxes leased by Orchestrate runs (one run's, or all) that the inventory still has."""
        by_name = {h.name: h for h in self.inventory.hosts}
        return [
            machine_for(by_name[box], holder)
            for box, holder in sorted(self.leases.held().items())
            if box in by_name and (run_id is None or holder == run_id)
        ]
