"""A stateful fake provider: machines are local run directories it keeps in a dict, with fault hooks.

It behaves as a cloud does where the lifecycle can tell: a launch may create machines and then fail with a
capacity error (they stay listed by tag until terminated), machines are billed from their launch, and listing
finds what the store never saw. Its machines are reached through the local shell, so a real (fake) payload runs.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.machine import (
    Access,
    Capability,
    Environment,
    LaunchRequest,
    Machine,
    MachineState,
    Placement,
)


@dataclass
class LaunchFault:
    """What a launch of one instance type does instead of succeeding."""

    error: Exception
    create_first: bool = False  # the machine exists (and bills) before the error


@dataclass
class FakeProvider:
    """Machines as a dict keyed by id; ``launch_faults`` by instance type; ``terminate_error`` and ``list_error``
    make those calls fail (a foreign exception type tests that teardown catches everything); ``list_prices`` False
    lists machines without their price, as a cloud's listing by tag does."""

    root: Path
    python: str
    name: str = "fake"
    capabilities: frozenset[Capability] = frozenset({Capability.SPOT, Capability.MULTI_NODE})
    launch_faults: dict[str, LaunchFault] = field(default_factory=dict)
    terminate_error: BaseException | None = None
    list_error: BaseException | None = None
    list_prices: bool = True
    machines: dict[str, Machine] = field(default_factory=dict)
    launches: list[Placement] = field(default_factory=list)
    images: list[str | None] = field(default_factory=list)  # the image each launch was asked to boot
    terminated: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _create(self, request: LaunchRequest) -> Machine:
        machine_id = f"i-{next(self._ids):04d}"
        workdir = self.root / machine_id
        workdir.mkdir(parents=True)
        machine = Machine(
            run_id=request.run_id, id=machine_id, provider=self.name, placement=request.placement,
            access=Access(via="local"), environment=Environment(prepare="image", python=self.python,
                                                                workdir=str(workdir)),
            run_dir=str(workdir / "runs" / request.run_id), launched_at=datetime.now(UTC),
            private_address="127.0.0.1", extra={"tags": ",".join(f"{k}={v}" for k, v in request.tags.items())},
        )
        self.machines[machine_id] = machine
        return machine

    def launch(self, request: LaunchRequest) -> list[Machine]:
        self.launches.append(request.placement)
        self.images.append(request.image)
        fault = self.launch_faults.get(request.placement.instance_type)
        if fault is not None:
            if fault.create_first:
                self._create(request)
            raise fault.error
        return [self._create(request) for _ in range(request.count)]

    def terminate(self, run_id: str, machines: Sequence[Machine] = ()) -> None:
        if self.terminate_error is not None:
            raise self.terminate_error
        for machine_id in [m.id for m in self.machines.values() if m.run_id == run_id] + [m.id for m in machines]:
            gone = self.machines.pop(machine_id, None)
            if gone is not None:
                shutil.rmtree(self.root / machine_id, ignore_errors=True)
                self.terminated.append(machine_id)

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        if self.list_error is not None:
            raise self.list_error
        listed = [m for m in self.machines.values() if run_id is None or m.run_id == run_id]
        if not self.list_prices:
            listed = [replace(m, placement=replace(m.placement, price_per_hour=0.0)) for m in listed]
        return listed

    def state(self, machine_id: str) -> MachineState:
        return MachineState.RUNNING if machine_id in self.machines else MachineState.TERMINATED
