"""The provider contract suite (DESIGN §2, STYLE 9): every provider passes the same tests.

A subclass gives two fixtures: ``provider`` (a fresh provider with nothing launched) and ``placement`` (what to
launch, one machine per request), and may set ``count`` (machines one launch gives). Tests observe effects the
way the core does: through ``list_machines`` and by reaching each machine through its typed access.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from orchestrator.machine import LaunchRequest, Machine, MachineState, Placement
from orchestrator.remote.connect import transport_to

_runs = itertools.count(1)


def _request(placement: Placement, count: int) -> LaunchRequest:
    run_id = f"r-contract-{next(_runs):04d}"
    return LaunchRequest(run_id=run_id, placement=placement, count=count, tags={"orchestrate-run": run_id})


class ProviderContract:
    """Mixed into a test class per provider."""

    count = 1

    def test_launch_gives_the_machines_asked_for_tagged_with_the_run(self, provider: Any, placement: Placement) -> None:
        request = _request(placement, self.count)
        machines = provider.launch(request)
        try:
            assert len(machines) == self.count
            assert all(m.run_id == request.run_id and m.provider == provider.name for m in machines)
            assert all(m.state == MachineState.RUNNING for m in machines)
            assert len({m.id for m in machines}) == self.count
            listed = {m.id for m in provider.list_machines(run_id=request.run_id)}
            assert listed == {m.id for m in machines}
        finally:
            provider.terminate(request.run_id, machines)

    def test_terminate_makes_the_run_s_machines_go_away_and_is_idempotent(
        self, provider: Any, placement: Placement
    ) -> None:
        request = _request(placement, self.count)
        machines = provider.launch(request)
        provider.terminate(request.run_id, machines)
        assert provider.list_machines(run_id=request.run_id) == []
        provider.terminate(request.run_id, machines)  # again: not an error
        provider.terminate(request.run_id)  # by tag only: not an error

    def test_terminate_by_tag_finds_machines_the_caller_never_saw(self, provider: Any, placement: Placement) -> None:
        request = _request(placement, self.count)
        provider.launch(request)  # the caller "crashed" before it recorded the machines
        provider.terminate(request.run_id)
        assert provider.list_machines(run_id=request.run_id) == []

    def test_list_machines_without_a_run_lists_every_run(self, provider: Any, placement: Placement) -> None:
        request = _request(placement, self.count)
        machines = provider.launch(request)
        try:
            assert {m.id for m in machines} <= {m.id for m in provider.list_machines() if m.run_id == request.run_id}
        finally:
            provider.terminate(request.run_id, machines)

    def test_a_machine_survives_the_store_s_record_and_is_reachable_through_its_access(
        self, provider: Any, placement: Placement, tmp_path: Path
    ) -> None:
        request = _request(placement, self.count)
        machines = provider.launch(request)
        try:
            for machine in machines:
                again = Machine.from_record(machine.to_record())
                assert again == machine
                transport = transport_to(again.access, tmp_path, 30.0)
                try:
                    assert transport.run("echo reachable").stdout.strip() == b"reachable"
                finally:
                    transport.close()
        finally:
            provider.terminate(request.run_id, machines)

    def test_each_machine_is_priced_by_its_own_placement(self, provider: Any, placement: Placement) -> None:
        request = _request(placement, self.count)
        machines = provider.launch(request)
        try:
            for machine in machines:
                assert machine.placement.provider == placement.provider
                assert machine.placement.price_per_hour >= 0
                assert machine.launched_at.tzinfo is not None
        finally:
            provider.terminate(request.run_id, machines)
