"""A whole run on the AWS provider, in-process: moto's EC2 for the control plane, a loopback sshd (presenting the
host key the provider injected through user-data) for the instance. Afterwards nothing of the run is left: no
instance running, no security group or key pair, no private key file — also when any step fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from orchestrator.catalog.spot import aws_quote
from orchestrator.clouds import aws
from orchestrator.lifecycle import execute_plan
from orchestrator.plan import make_plan
from orchestrator.providers.aws import network
from orchestrator.providers.aws.instance import AwsProvider
from orchestrator.run_steps import RunContext
from orchestrator.spec import RunSpec
from orchestrator.store import Store
from tests.fakes import aws as aws_fakes
from tests.fakes.aws import IMAGE, REGION, LoopbackBox
from tests.fakes.loopback import break_step
from tests.fakes.reporter import QuietReporter
from tests.integration.conftest import start_server

moto_aws = aws_fakes.moto_aws  # the fixture
pytestmark = pytest.mark.slow




@pytest.fixture
def loopback(tmp_path: Path, moto_aws: None, sshd_binary: Path) -> Iterator[LoopbackBox]:
    box = LoopbackBox(AwsProvider(tmp_path / "home", sleep=lambda s: None), tmp_path / "boxes", start_server)
    yield box
    box.stop()


def _run(tmp_path: Path, loopback: LoopbackBox, clients: Any = None, **machine: Any) -> tuple[Any, Store]:
    spec = RunSpec.model_validate(
        {"provider": "aws", "machine": {"instance_type": "g4dn.xlarge", "image": IMAGE, **machine}})
    plan = make_plan(spec, home=tmp_path / "home")
    store = Store(tmp_path / "home")
    # Spot machines are priced by the run's launch step; with hooked clients, at what their hooks answer.
    quoter = (lambda name: partial(aws_quote, ec2=lambda region: clients(region, True))) if clients else None
    ctx = RunContext(store=store, home=tmp_path / "home", reporter=QuietReporter(),
                     provider_factory=lambda name: loopback, spot_quoter=quoter,
                     poll_interval_s=0.05, allowed_cidr="127.0.0.1/32")
    return execute_plan(plan, ctx), store


def _left(run_id: str, home: Path) -> dict[str, Any]:
    """What of the run is still there: instances not terminated, its security group, its key pair, its key file."""
    ec2 = aws.client("ec2", region=REGION)
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:orchestrate:run-id", "Values": [run_id]}])
    running = [i["InstanceId"] for r in reservations["Reservations"] for i in r["Instances"]
               if i["State"]["Name"] != "terminated"]
    groups = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"] if run_id in g["GroupName"]]
    pairs = [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if run_id in k["KeyName"]]
    return {"instances": running, "groups": groups, "key_pairs": pairs,
            "key_file": network.key_dir(home, run_id).exists()}


NOTHING = {"instances": [], "groups": [], "key_pairs": [], "key_file": False}


def test_a_smoke_run_on_aws_completes_and_leaves_nothing(tmp_path: Path, loopback: LoopbackBox, payload: None) -> None:
    outcome, store = _run(tmp_path, loopback)
    assert outcome.state == "succeeded", outcome.error
    assert outcome.results is not None and outcome.results["samples"][0]["value"] == 50.0
    assert _left(outcome.run_id, tmp_path / "home") == NOTHING
    [machine] = store.machines(outcome.run_id)
    assert machine.state == "terminated" and machine.machine_id is not None and machine.machine_id.startswith("i-")
    assert machine.machine is not None and machine.machine.access.host_key is not None  # pinned, never TOFU
    # Billed per second with AWS's 60 s minimum, at the catalog's g4dn.xlarge price.
    assert store.get_run(outcome.run_id).cost_usd == pytest.approx(60 * 0.526 / 3600)


@pytest.mark.parametrize("step", ["provision", "connect", "prepare", "push", "execute", "collect"])
def test_a_failure_at_any_step_leaves_nothing_running(
    tmp_path: Path, loopback: LoopbackBox, payload: None, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    break_step(monkeypatch, loopback, step)
    with pytest.raises(RuntimeError, match=f"injected failure in {step}"):
        _run(tmp_path, loopback)  # a bug-like exception propagates, after teardown and recording
    [run] = Store(tmp_path / "home").list_runs()
    assert run.state == "failed" and f"injected failure in {step}" in (run.error or "")
    assert _left(run.id, tmp_path / "home") == NOTHING


def _two_region_catalog(home: Path) -> None:
    """The user's catalog: g4dn.xlarge in us-east-1 (cheaper, tried first) and in us-west-2."""
    from orchestrator.catalog.offers import load_offers, write_offers

    offers = [o for o in load_offers() if o.provider == "aws" and o.instance_type == "g4dn.xlarge"]
    west = offers[0].model_copy(update={"region": "us-west-2", "on_demand_per_hour": 0.6})
    home.mkdir(parents=True, exist_ok=True)
    write_offers([*offers, west], home / "offers.csv")


def _run_with(tmp_path: Path, clients: Any, **machine: Any) -> tuple[Any, Store]:
    """A whole run on a loopback instance whose EC2 clients carry the given hooks (injected errors, spot quotes)."""
    box = LoopbackBox(AwsProvider(tmp_path / "home", sleep=lambda s: None, client_factory=clients),
                      tmp_path / "boxes", start_server)
    try:
        return _run(tmp_path, box, clients, **machine)
    finally:
        box.stop()


def _refuse_in(region: str, code: str) -> Callable[..., Any]:
    from tests.fakes.aws import refusal

    def hook(params: dict[str, Any], **kwargs: Any) -> Any:
        zone = str(params["body"].get("Placement.AvailabilityZone", ""))  # the serialized EC2 query
        return refusal(code, f"injected {code} in {zone}") if zone.startswith(region) else None

    return hook


def test_no_capacity_in_the_first_zone_launches_in_the_next_and_both_tries_are_events(
    tmp_path: Path, moto_aws: None, sshd_binary: Path, payload: None
) -> None:
    from tests.fakes.aws import HookedClients

    clients = HookedClients({"before-call.ec2.RunInstances": _refuse_in("us-east-1a", "InsufficientInstanceCapacity")})
    outcome, store = _run_with(tmp_path, clients)
    assert outcome.state == "succeeded", outcome.error
    zones = [(e.outcome, e.detail or "") for e in store.events(outcome.run_id) if e.step == "zone"]
    assert [o for o, _ in zones] == ["failed", "ok"]
    assert "attempt 1: us-east-1a:" in zones[0][1] and "InsufficientInstanceCapacity" in zones[0][1]
    [machine] = store.machines(outcome.run_id)
    assert f"attempt 1: us-east-1b: {machine.machine_id}" == zones[1][1]
    assert [e.outcome for e in store.events(outcome.run_id) if e.step == "launch"] == ["ok"]  # one placement
    assert _left(outcome.run_id, tmp_path / "home") == NOTHING


def test_no_capacity_in_any_zone_of_the_first_region_launches_in_the_next(
    tmp_path: Path, moto_aws: None, sshd_binary: Path, payload: None
) -> None:
    from tests.fakes.aws import HookedClients

    _two_region_catalog(tmp_path / "home")
    refuse = _refuse_in("us-east-1", "InsufficientInstanceCapacity")
    clients = HookedClients({"before-call.ec2.RunInstances": refuse})
    outcome, store = _run_with(tmp_path, clients)
    assert outcome.state == "succeeded", outcome.error
    launches = [(e.outcome, e.detail or "") for e in store.events(outcome.run_id) if e.step == "launch"]
    assert [o for o, _ in launches] == ["failed", "ok"]
    assert "us-east-1" in launches[0][1] and "InsufficientInstanceCapacity" in launches[0][1]
    assert "us-west-2" in launches[1][1]
    [machine] = [m for m in store.machines(outcome.run_id) if m.machine is not None]
    assert machine.machine is not None and machine.machine.placement.region == "us-west-2"
    assert _left(outcome.run_id, tmp_path / "home") == NOTHING


def test_a_quota_error_is_one_line_naming_the_quota_and_no_failover(
    tmp_path: Path, moto_aws: None, sshd_binary: Path, payload: None
) -> None:
    from tests.fakes.aws import HookedClients

    _two_region_catalog(tmp_path / "home")
    clients = HookedClients({"before-call.ec2.RunInstances": _refuse_in("us-", "VcpuLimitExceeded")})
    outcome, store = _run_with(tmp_path, clients)
    assert outcome.state == "failed"
    assert "\"Running On-Demand G and VT instances\" in us-east-1" in (outcome.error or "")
    assert "\n" not in (outcome.error or "")
    launches = [e for e in store.events(outcome.run_id) if e.step == "launch"]
    assert len(launches) == 1  # no other zone, no other region
    assert _left(outcome.run_id, tmp_path / "home") == NOTHING


def test_a_spot_run_is_billed_at_the_spot_price_ec2_quoted_at_launch(
    tmp_path: Path, moto_aws: None, sshd_binary: Path, payload: None
) -> None:
    from datetime import UTC, datetime

    from tests.fakes.aws import HookedClients, spot_price_answer

    quoted_at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    clients = HookedClients({"before-call.ec2.DescribeSpotPriceHistory": spot_price_answer(("0.2104", quoted_at))})
    outcome, store = _run_with(tmp_path, clients, spot=True)
    assert outcome.state == "succeeded", outcome.error
    [row] = store.machines(outcome.run_id)
    assert row.machine is not None and row.machine.placement.spot
    assert row.machine.placement.price_per_hour == 0.2104  # the quote, not the catalog's $0.158
    assert (row.machine.placement.price_quoted, row.machine.placement.price_quoted_at) == (
        "0.2104", quoted_at.isoformat())
    assert {cost.price_per_hour for cost in store.costs(outcome.run_id)} == {0.2104}
    assert store.get_run(outcome.run_id).cost_usd == pytest.approx(60 * 0.2104 / 3600)  # AWS's 60 s minimum
    assert _left(outcome.run_id, tmp_path / "home") == NOTHING
