"""Placements from the catalog, the inventory and the dev box: ranked, priced, and every bad ask refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.catalog.offers import load_offers
from orchestrator.catalog.placement import catalog_placements, rented_placements
from orchestrator.errors import SpecError
from orchestrator.inventory.model import Inventory
from orchestrator.plan import make_plan
from orchestrator.spec import MachineSpec, RunSpec

KEY = "SHA256:KUCSeF6V9xMh2sUf0Qn9A9JQ6c2iqsrV0kqVZgW2bXQ"


@pytest.fixture
def offers() -> list:  # type: ignore[type-arg]
    shipped = [o for o in load_offers() if o.provider == "aws"]
    t4 = next(o for o in shipped if o.instance_type == "g4dn.xlarge")
    # The same type in a dearer region, and without a spot price there.
    west = t4.model_copy(update={"region": "us-west-2", "on_demand_per_hour": 0.6, "spot_per_hour": None})
    return [*shipped, west]


def test_a_gpu_gives_every_type_and_region_with_it_cheapest_first(offers: list) -> None:  # type: ignore[type-arg]
    resolved = catalog_placements("aws", MachineSpec(gpu="T4"), offers)
    assert [(p.instance_type, p.region, p.spot, p.price_per_hour) for p in resolved.placements] == [
        ("g4dn.xlarge", "us-east-1", False, 0.526), ("g4dn.xlarge", "us-west-2", False, 0.6)]
    assert all(p.billing_rule == "aws_linux" for p in resolved.placements)
    assert resolved.count == 1 and "us-west-2" in resolved.choices[1]


def test_spot_comes_first_then_on_demand_unless_the_fallback_is_off(offers: list) -> None:  # type: ignore[type-arg]
    resolved = catalog_placements("aws", MachineSpec(gpu="T4", spot=True, max_price=0.3), offers)
    assert [(p.region, p.spot, p.price_per_hour, p.max_price) for p in resolved.placements] == [
        ("us-east-1", True, 0.158, 0.3), ("us-east-1", False, 0.526, None), ("us-west-2", False, 0.6, None)]
    strict = catalog_placements("aws", MachineSpec(gpu="T4", spot=True, on_demand_fallback=False), offers)
    assert [(p.region, p.spot) for p in strict.placements] == [("us-east-1", True)]


def test_regions_limit_where_failover_may_go(offers: list) -> None:  # type: ignore[type-arg]
    resolved = catalog_placements("aws", MachineSpec(gpu="T4", regions=["us-west-2"]), offers)
    assert [p.region for p in resolved.placements] == ["us-west-2"]
    with pytest.raises(SpecError, match=r"invalid regions: received \['eu-north-1'\].*us-east-1, us-west-2"):
        catalog_placements("aws", MachineSpec(gpu="T4", regions=["eu-north-1"]), offers)


@pytest.mark.parametrize(("machine", "message"), [
    (MachineSpec(instance_type="p9.huge"), "invalid --instance-type: received 'p9.huge'; accepted: an available aws"),
    (MachineSpec(gpu="H900"), "invalid --gpu: received 'H900'; accepted: a GPU of the aws catalog"),
    (MachineSpec(), "invalid --instance-type: not set"),
    (MachineSpec(instance_type="p2.xlarge", spot=True, on_demand_fallback=False), "invalid --spot"),
])
def test_what_the_catalog_cannot_give_is_refused(offers: list, machine: MachineSpec, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        catalog_placements("aws", machine, offers)


def test_an_unknown_cloud_names_the_providers_the_catalog_has(offers: list) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpecError, match="invalid provider: received 'gcp'.*aws"):
        catalog_placements("gcp", MachineSpec(gpu="T4"), offers)


def test_rented_boxes_are_priced_each_at_its_own_and_the_plan_at_the_dearest() -> None:
    inventory = Inventory.model_validate({"hosts": [
        {"name": "cheap", "host": "192.0.2.1", "user": "u", "key_path": "/k", "host_key": KEY,
         "gpu": {"model": "T4"}, "price": {"per_hour": 0.2}},
        {"name": "dear", "host": "192.0.2.2", "user": "u", "key_path": "/k", "host_key": KEY,
         "gpu": {"model": "T4"}, "price": {"per_hour": 0.9}},
    ]})
    resolved = rented_placements(MachineSpec(gpu="t4", count=2), inventory)
    [placement] = resolved.placements
    assert placement.hosts == ("cheap", "dear") and placement.price_per_hour == 0.9 and resolved.count == 2
    assert not placement.price_fixed
    fixed = rented_placements(MachineSpec(hosts=["dear"], price_per_hour=0.5), inventory)
    assert fixed.placements[0].price_fixed and fixed.placements[0].price_per_hour == 0.5 and fixed.count == 1


def test_making_a_plan_starts_nothing_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("make_plan started a subprocess")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    plan = make_plan(RunSpec(provider="local", machine={"price_per_hour": 3.6}), home=tmp_path / "home")
    assert not (tmp_path / "home").exists()
    assert plan.placements[0].price_per_hour == 3.6 and plan.count == 1
    # The estimate is the suite's estimate plus the dev box's setup, billed per second at $3.6/h.
    assert plan.estimated_cost_usd == pytest.approx(plan.estimated_duration_s / 1000)


def test_aws_boots_the_deep_learning_ami_by_default_and_names_it_in_the_plan(tmp_path: Path) -> None:
    from orchestrator.catalog.images import AWS_DLAMI

    plan = make_plan(RunSpec(provider="aws", machine={"gpu": "T4"}), home=tmp_path / "home")
    assert plan.image == AWS_DLAMI and plan.image.startswith("resolve:ssm:/aws/service/deeplearning/ami/")
    given = make_plan(RunSpec(provider="aws", machine={"gpu": "T4", "image": "ami-0123456789abcdef0"}),
                      home=tmp_path / "home")
    assert given.image == "ami-0123456789abcdef0"
    with pytest.raises(SpecError, match="do not support P2 .K80. or P3 .V100."):
        make_plan(RunSpec(provider="aws", machine={"gpu": "V100"}), home=tmp_path / "home")


def test_the_base_deep_learning_ami_gets_a_venv_for_the_payload_and_other_images_are_taken_as_ready() -> None:
    from orchestrator.catalog.images import AWS_DLAMI
    from orchestrator.providers.aws.instance import _environment

    assert _environment(AWS_DLAMI.removeprefix("resolve:ssm:")).prepare == "venv"
    assert _environment(AWS_DLAMI).prepare == "venv"  # as moto keeps an image given by its SSM parameter
    assert _environment("ami-0123456789abcdef0").prepare == "image"
