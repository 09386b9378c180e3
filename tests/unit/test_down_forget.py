"""`down --forget` on a cloud machine: the remote clean-up is given up, the machine is still terminated (never left
billing), and the run's events say so."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.machine import Access, Capability, Environment, LaunchRequest, Machine, Placement
from orchestrator.remote.transport import Transport
from orchestrator.store import Store
from orchestrator.teardown import down_run


class _Cloud:
    """A cloud provider that keeps its machines in a dict, as an account would."""

    name = "aws"
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self, machines: Sequence[Machine]) -> None:
        self.up = {m.id: m for m in machines}

    def launch(self, request: LaunchRequest) -> list[Machine]:
        raise AssertionError("not launched here")

    def terminate(self, run_id: str, machines: Sequence[Machine] = ()) -> None:
        for machine in machines or list(self.up.values()):
            self.up.pop(machine.id, None)

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        return [m for m in self.up.values() if run_id is None or m.run_id == run_id]


def _never(access: Access, home: Path, timeout_s: float) -> Transport:
    raise AssertionError(f"--forget connected to {access.describe()}")


def test_forget_terminates_a_cloud_machine_without_connecting_and_records_the_event(tmp_path: Path) -> None:
    machine = Machine(run_id="r-1", id="i-0abc", provider="aws",
                      placement=Placement(provider="aws", instance_type="g4dn.xlarge", price_per_hour=0.526),
                      access=Access(host="192.0.2.7", user="ubuntu", key_path="/k", host_key="SHA256:x"),
                      environment=Environment(), run_dir="orchestrate/runs/r-1", launched_at=datetime.now(UTC))
    cloud = _Cloud([machine])
    with Store(tmp_path / "home") as store:
        store.create_run("r-1", provider="aws", suite="smoke", name=None, spec={})
        store.record_machines(store.record_launch_request("r-1", "aws", {}), [machine])
        store.update_machine(machine, touched=True)
        store.finish_run("r-1", state="succeeded", duration_s=1.0, error=None, log_tail=None, results=None, costs=[])
        result = down_run(store, "r-1", providers=lambda name: cloud, connect=_never, home=tmp_path, forget=True)
        assert result.gone == ["i-0abc"] and result.forgotten == {} and result.failed == {}
        assert cloud.up == {}  # terminated: a cloud machine is never forgotten while it bills
        assert [(m.machine_id, m.state) for m in store.machines("r-1")] == [("i-0abc", "terminated")]
        [event] = [e for e in store.events("r-1") if e.step == "forget"]
        assert event.outcome == "ok" and "i-0abc: terminated without its remote clean-up" in (event.detail or "")
        assert result.cost_usd is not None and result.cost_usd > 0


@pytest.mark.parametrize(("run_ids", "everything", "received"), [((), False, "no RUN"), (("r-1",), True, "--all"),
                                                                  ((), True, "--all")])
def test_forget_is_refused_without_run_ids_or_with_all(
    tmp_path: Path, run_ids: tuple[str, ...], everything: bool, received: str
) -> None:
    from orchestrator import api

    with pytest.raises(SpecError) as refused:
        api.down(run_ids, everything=everything, forget=True, home=tmp_path / "home")
    assert refused.value.field == "--forget" and refused.value.received == received
    assert not (tmp_path / "home").exists()  # refused before the store was opened
