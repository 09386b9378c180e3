"""Rented bare-metal boxes and owned dev boxes, reached over SSH and listed in the inventory.

A box "comes to exist" for a run by taking its lease in the store, so two runs never share it; it "goes
away" when the run's payload is stopped, its run directory removed and the lease given back.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.errors import CapacityError, OrchestrateError, ProviderError
from orchestrator.inventory.model import Inventory, InventoryHost, inventory_path, load_inventory
from orchestrator.providers.base import Capability, LaunchRequest, Machine, MachineState
from orchestrator.store import Store, process_alive

STATE_MAP = {"leased": MachineState.RUNNING, "released": MachineState.TERMINATED}
LEASE_POLL_S = 1.0


def parse_selection(instance_type: str) -> tuple[list[str] | None, str | None]:
    """Reads the offer's instance type as the rented provider's selection.

    ``"host:a,b"`` names boxes, ``"gpu:RTX 4090"`` asks for a GPU model, anything else means any box.
    """
    kind, _, value = instance_type.partition(":")
    if kind == "host" and value:
        return [name.strip() for name in value.split(",") if name.strip()], None
    if kind == "gpu" and value:
        return None, value.strip()
    return None, None


def machine_for(host: InventoryHost, run_id: str) -> Machine:
    """Returns the Machine a leased inventory host is for one run."""
    return Machine(
        id=host.name,
        provider="rented",
        address=host.host,
        port=host.port,
        user=host.user,
        workdir=f"{host.workdir.rstrip('/')}/runs/{run_id}",
        launched_at=datetime.now(UTC),
        host_key=host.host_key,
        private_address=host.private_address or host.host,
        extra={
            "key_path": str(Path(host.key_path).expanduser()),
            "trust_on_first_use": "true" if host.trust_on_first_use else "false",
            "prepare": host.prepare,
            "python": host.python,
            "workdir_base": host.workdir,
            "price_per_hour": f"{host.price.usd_per_hour():.6f}",
            "gpu": f"{host.gpu.count} x {host.gpu.model}" if host.gpu.model else "none",
            **({"requirements": "\n".join(host.requirements)} if host.requirements is not None else {}),
        },
    )


class RentedProvider:
    """Boxes from the inventory, leased one run at a time.

    Args:
        home: the Orchestrate home (store, known_hosts, default inventory).
        inventory: an already-loaded inventory; by default read from :func:`inventory_path`.
        clock: monotonic seconds (injected in tests).
        sleep: how to wait between lease attempts (injected in tests).
    """

    name = "rented"
    capabilities: frozenset[Capability] = frozenset({Capability.MULTI_NODE})

    def __init__(
        self,
        home: Path,
        inventory: Inventory | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.home = home
        self._inventory = inventory
        self.clock = clock
        self.sleep = sleep

    @property
    def inventory(self) -> Inventory:
        """The inventory, read on first use."""
        if self._inventory is None:
            self._inventory = load_inventory(inventory_path(self.home))
        return self._inventory

    def launch(self, request: LaunchRequest) -> list[Machine]:
        """Leases ``request.count`` boxes (or every named box), waiting up to ``request.wait_s`` for busy ones.

        Raises:
            CapacityError: not enough boxes became free in time; names the runs that hold them.
            SpecError: the selection names no box of the inventory.
        """
        names, gpu = parse_selection(request.offer.instance_type)
        candidates = self.inventory.select(names=names, gpu=gpu)
        need = len(names) if names else request.count
        if need > len(candidates):
            raise CapacityError(f"the run needs {need} boxes; the inventory has {len(candidates)} that match")
        store = Store(self.home)
        held: list[InventoryHost] = []
        busy: dict[str, str] = {}
        deadline = self.clock() + request.wait_s
        try:
            while True:
                for host in candidates:
                    if len(held) == need or host in held:
                        continue
                    holder = store.acquire_lease(
                        host.name, request.run_id, holder_pid=os.getpid(), alive=process_alive
                    )
                    if holder is None:
                        held.append(host)
                        busy.pop(host.name, None)
                    else:
                        busy[host.name] = holder
                if len(held) == need:
                    return [machine_for(host, request.run_id) for host in held]
                if self.clock() >= deadline:
                    for host in held:
                        store.release_lease(host.name, request.run_id)
                    in_use = ", ".join(f"{name} (run {run})" for name, run in sorted(busy.items()))
                    raise CapacityError(
                        f"no free box after waiting {request.wait_s:g} s: in use: {in_use}",
                        hint="wait for those runs, or raise --lease-wait",
                    )
                self.sleep(LEASE_POLL_S)
        except BaseException:
            for host in held:
                store.release_lease(host.name, request.run_id)
            raise
        finally:
            store.close()

    def terminate(self, machines: Sequence[Machine]) -> None:
        """Stops each run's payload on its box, removes the run directory and gives the lease back.

        Raises:
            ProviderError: a box could not be cleaned (its lease is released all the same).
        """
        from orchestrator.remote.connect import transport_to
        from orchestrator.remote.detached import DetachedProcess

        def clean(machine: Machine) -> str | None:
            try:
                transport = transport_to(machine, self.home, connect_timeout_s=60.0)
                try:
                    DetachedProcess(transport, machine.workdir).kill()
                    transport.run(f"rm -rf {shlex.quote(machine.workdir)}", timeout=120.0)
                finally:
                    transport.close()
            except OrchestrateError as error:
                return f"{machine.id}: {error}"
            return None

        if not machines:
            return
        # Boxes are cleaned at once; leases are given back whatever happened on the box.
        with ThreadPoolExecutor(max_workers=min(16, len(machines))) as pool:
            failures = [failure for failure in pool.map(clean, machines) if failure]
        store = Store(self.home)
        try:
            for machine in machines:
                store.release_lease(machine.id, machine.workdir.rstrip("/").rsplit("/", 1)[-1])
        finally:
            store.close()
        if failures:
            raise ProviderError("could not clean up " + "; ".join(failures))

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        """Lists the boxes leased by Orchestrate runs (one run's, or all)."""
        store = Store(self.home)
        try:
            leases = store.leases()
        finally:
            store.close()
        by_name = {h.name: h for h in self.inventory.hosts}
        return [
            machine_for(by_name[host], holder)
            for host, holder in sorted(leases.items())
            if host in by_name and (run_id is None or holder == run_id)
        ]
