"""A whole run on the Azure provider, in-process: the ARM fake for the control plane, a loopback sshd (presenting the
host key the provider injected through cloud-init) for the VM. Afterwards nothing of the run is left: no resource
group, no private key file — also when any step fails, and after a failover to the next region."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from orchestrator.lifecycle import execute_plan
from orchestrator.plan import make_plan
from orchestrator.providers.keys import key_dir
from orchestrator.run_steps import RunContext
from orchestrator.spec import RunSpec
from orchestrator.store import Store
from tests.fakes import azure as azure_fakes
from tests.fakes.arm import ArmFake
from tests.fakes.azure import LoopbackAzureBox, provider_for
from tests.fakes.loopback import break_step
from tests.fakes.reporter import QuietReporter
from tests.integration.conftest import start_server

arm = azure_fakes.arm  # the fixture
pytestmark = pytest.mark.slow

SIZE = "Standard_NC4as_T4_v3"
QUOTA_MESSAGE = ("Operation could not be completed as it results in exceeding approved Standard NCASv3_T4 Family "
                 "Cores quota. Additional details - Location: eastus")


@pytest.fixture
def loopback(tmp_path: Path, arm: ArmFake, sshd_binary: Path) -> Iterator[LoopbackAzureBox]:
    box = LoopbackAzureBox(provider_for(arm, tmp_path / "home"), arm, tmp_path / "boxes",
                           partial(start_server, sshd_binary=sshd_binary))
    yield box
    box.stop()


def _run(tmp_path: Path, loopback: LoopbackAzureBox, **machine: Any) -> tuple[Any, Store]:
    spec = RunSpec.model_validate({"provider": "azure", "machine": {"instance_type": SIZE, **machine}})
    plan = make_plan(spec, home=tmp_path / "home")
    store = Store(tmp_path / "home")
    ctx = RunContext(store=store, home=tmp_path / "home", reporter=QuietReporter(),
                     provider_factory=lambda name: loopback,
                     poll_interval_s=0.05, allowed_cidr="127.0.0.1/32")
    return execute_plan(plan, ctx), store


def _left(fake: ArmFake, run_id: str, home: Path) -> dict[str, Any]:
    """What of the run is still there: its resource groups (any resource in them goes with them), its key file."""
    groups = [g["name"] for g in fake.groups() if run_id in g["name"]]
    return {"groups": groups, "key_file": key_dir(home, run_id).exists()}


NOTHING = {"groups": [], "key_file": False}


def test_a_smoke_run_on_azure_completes_and_leaves_nothing(
    tmp_path: Path, arm: ArmFake, loopback: LoopbackAzureBox, payload: None
) -> None:
    outcome, store = _run(tmp_path, loopback)
    assert outcome.state == "succeeded", outcome.error
    assert outcome.results is not None and outcome.results["samples"][0]["value"] == 50.0
    assert arm.groups() == []
    assert _left(arm, outcome.run_id, tmp_path / "home") == NOTHING
    [machine] = store.machines(outcome.run_id)
    assert machine.state == "terminated" and machine.machine_id == f"{outcome.run_id}-0"
    assert machine.machine is not None and machine.machine.access.host_key is not None  # pinned, never TOFU
    assert machine.machine.placement.region == "eastus"
    # Priced at the catalog's Standard_NC4as_T4_v3 price; Azure bills full minutes only, and this run took seconds.
    assert {cost.price_per_hour for cost in store.costs(outcome.run_id)} == {0.526}
    assert store.get_run(outcome.run_id).cost_usd == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("step", ["provision", "connect", "prepare", "push", "execute", "collect"])
def test_a_failure_at_any_step_leaves_no_group(
    tmp_path: Path, arm: ArmFake, loopback: LoopbackAzureBox, payload: None, monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    break_step(monkeypatch, loopback, step)
    with pytest.raises(RuntimeError, match=f"injected failure in {step}"):
        _run(tmp_path, loopback)  # a bug-like exception propagates, after teardown and recording
    [run] = Store(tmp_path / "home").list_runs()
    assert run.state == "failed" and f"injected failure in {step}" in (run.error or "")
    assert arm.groups() == []
    assert _left(arm, run.id, tmp_path / "home") == NOTHING


def _two_region_catalog(home: Path) -> None:
    """The user's catalog: Standard_NC4as_T4_v3 in eastus (cheaper, tried first) and in westus2."""
    from orchestrator.catalog.offers import load_offers, write_offers

    offers = [o for o in load_offers() if o.provider == "azure" and o.instance_type == SIZE]
    west = offers[0].model_copy(update={"region": "westus2", "on_demand_per_hour": 0.6})
    home.mkdir(parents=True, exist_ok=True)
    write_offers([*offers, west], home / "offers.csv")


def _in_eastus(body: dict[str, Any]) -> bool:
    return body.get("location") == "eastus"


@pytest.mark.parametrize(("code", "in_operation"), [("SkuNotAvailable", False), ("AllocationFailed", True)])
def test_no_capacity_in_the_first_region_launches_in_the_next_and_both_tries_are_events(
    tmp_path: Path, arm: ArmFake, loopback: LoopbackAzureBox, payload: None, code: str, in_operation: bool
) -> None:
    _two_region_catalog(tmp_path / "home")
    arm.fail("virtualMachines", code, in_operation=in_operation, when=_in_eastus)
    outcome, store = _run(tmp_path, loopback)
    assert outcome.state == "succeeded", outcome.error
    launches = [(e.outcome, e.detail or "") for e in store.events(outcome.run_id) if e.step == "launch"]
    assert [o for o, _ in launches] == ["failed", "ok"]
    assert "eastus" in launches[0][1] and code in launches[0][1]
    assert "westus2" in launches[1][1]
    [machine] = [m for m in store.machines(outcome.run_id) if m.machine is not None
                 and m.machine.placement.region == "westus2"]
    assert machine.state == "terminated"
    assert arm.groups() == []
    assert _left(arm, outcome.run_id, tmp_path / "home") == NOTHING


def test_a_quota_error_is_one_line_naming_the_family_quota_and_no_failover(
    tmp_path: Path, arm: ArmFake, loopback: LoopbackAzureBox, payload: None
) -> None:
    _two_region_catalog(tmp_path / "home")
    arm.fail("virtualMachines", "OperationNotAllowed", message=QUOTA_MESSAGE)
    outcome, store = _run(tmp_path, loopback)
    assert outcome.state == "failed"
    assert '"Standard NCASv3_T4 Family" vCPUs' in (outcome.error or "")
    assert "\n" not in (outcome.error or "")
    launches = [e for e in store.events(outcome.run_id) if e.step == "launch"]
    assert len(launches) == 1  # no other region
    assert not any("westus2" in path.lower() for _, path in arm.requests)
    assert arm.groups() == []
    assert _left(arm, outcome.run_id, tmp_path / "home") == NOTHING
