"""The teardown nothing can skip, on the rented provider's leases: a box whose clean-up failed stays held."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import ConnectTimeout
from orchestrator.inventory.model import Inventory
from orchestrator.machine import Access, LaunchRequest, LeaseState, Placement
from orchestrator.providers.rented import RentedProvider
from orchestrator.remote.transport import LocalTransport, Transport
from orchestrator.store import Store, StoreLeases
from orchestrator.teardown import tear_down

KEY = "SHA256:KUCSeF6V9xMh2sUf0Qn9A9JQ6c2iqsrV0kqVZgW2bXQ"


def test_a_box_whose_clean_up_failed_keeps_its_lease_and_the_next_run_is_refused(tmp_path: Path) -> None:
    inventory = Inventory.model_validate({"hosts": [
        {"name": f"box{i}", "host": f"192.0.2.{i + 1}", "user": "u", "key_path": "/k", "host_key": KEY,
         "workdir": str(tmp_path / f"box{i}")} for i in range(2)]})
    store = Store(tmp_path / "home")
    store.create_run("r-1", provider="rented", suite="smoke", name=None, spec={})
    provider = RentedProvider(tmp_path / "home", leases=StoreLeases(store), inventory=inventory)
    machines = provider.launch(LaunchRequest(run_id="r-1", count=2, placement=Placement(
        provider="rented", instance_type="any 2", hosts=("box0", "box1"))))
    row = store.record_launch_request("r-1", "rented", {})
    store.record_machines(row, machines)
    for machine in machines:
        Path(machine.run_dir).mkdir(parents=True)

    def connect(access: Access, home: Path, timeout_s: float) -> Transport:
        if access.host == "192.0.2.1":  # box0 is unreachable
            raise ConnectTimeout("box0 did not answer")
        return LocalTransport()

    result = tear_down(store, "r-1", machines, touched={"box0", "box1"}, providers=lambda name: provider,
                       connect=connect, home=tmp_path / "home")
    assert [m.id for m in result.gone] == ["box1"] and "box0 did not answer" in result.failed["box0"]
    assert not Path(machines[1].run_dir).exists()
    assert store.leases() == {"box0": "r-1"}  # kept: its payload may still run there
    assert [(r.machine_id, r.state) for r in store.machines("r-1")] == [("box0", "cleanup_failed"),
                                                                         ("box1", "terminated")]
    store.finish_run("r-1", state="failed", duration_s=1.0, error="x", log_tail=None, results=None, costs=[])
    store.create_run("r-2", provider="rented", suite="smoke", name=None, spec={})
    holder = store.acquire_lease("box0", "r-2")
    assert holder is not None and (holder.run_id, holder.state) == ("r-1", LeaseState.LEFT)
    assert store.acquire_lease("box1", "r-2") is None
