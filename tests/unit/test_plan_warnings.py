"""Plan warnings: a retired offer is planned with its retirement date and successors, never ahead of an available
one, and an image given for P2/P3 is flagged; a plain available type plans without a warning."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from orchestrator.catalog.images import AWS_DLAMI, AZURE_UBUNTU_HPC
from orchestrator.catalog.offers import Offer, load_offers, write_offers
from orchestrator.catalog.placement import catalog_placements
from orchestrator.cost import billing_rule
from orchestrator.errors import SpecError
from orchestrator.plan import make_plan
from orchestrator.spec import MachineSpec, RunSpec

IMAGE = "ami-0123456789abcdef0"


def _retire(offer: Offer, on: date, **changes: object) -> Offer:
    return offer.model_copy(update={"status": "retired", "retired_on": on, **changes})


def test_a_retired_type_named_is_planned_with_its_date_and_successors() -> None:
    resolved = catalog_placements("azure", MachineSpec(instance_type="Standard_NC6"), load_offers())
    assert [(p.instance_type, p.region, p.price_per_hour) for p in resolved.placements] == [
        ("Standard_NC6", "eastus", 0.9)]
    [warning] = resolved.warnings
    assert warning.startswith("Standard_NC6 was retired on 2023-09-06 (azure); the provider will likely refuse it; "
                              "successors with a GPU: Standard_NC4as_T4_v3 (T4, $0.526/h), ")
    assert "Standard_NC24ads_A100_v4" in warning and "Standard_NC6s_v3" not in warning  # itself retired
    assert resolved.choices[0].endswith("(retired 2023-09-06)")


def test_successors_rank_same_gpu_count_first_then_cheapest_each_once_at_most_four() -> None:
    shipped = {o.instance_type: o for o in load_offers() if o.provider == "aws"}
    old = _retire(shipped["p4d.24xlarge"], date(2024, 1, 31), instance_type="p9.retired")
    t4_west = shipped["g4dn.xlarge"].model_copy(update={"region": "us-west-2", "on_demand_per_hour": 0.4})
    resolved = catalog_placements("aws", MachineSpec(instance_type="p9.retired"),
                                  [*shipped.values(), t4_west, old])
    [warning] = resolved.warnings
    # 8 GPUs like the retired type: p4d then p5; then the cheapest one-GPU types, g4dn at its cheaper region's price.
    assert warning.endswith("successors with a GPU: p4d.24xlarge (A100 40GB, $32.77/h), "
                            "p5.48xlarge (H100 80GB, $98.32/h), g4dn.xlarge (T4, $0.4/h), p2.xlarge "
                            "(K80 (one GK210), $0.9/h)")
    assert "was retired on 2024-01-31 (aws)" in warning and warning.count("g4dn.xlarge") == 1


def test_a_gpu_matching_retired_and_available_offers_plans_only_the_available_ones() -> None:
    offers = [o for o in load_offers() if o.provider == "aws"]
    t4 = next(o for o in offers if o.instance_type == "g4dn.xlarge")
    cheaper_but_retired = _retire(t4, date(2025, 1, 1), instance_type="g4old.xlarge", on_demand_per_hour=0.1,
                                  spot_per_hour=0.01)
    resolved = catalog_placements("aws", MachineSpec(gpu="T4", spot=True), [cheaper_but_retired, *offers])
    assert {p.instance_type for p in resolved.placements} == {"g4dn.xlarge"}
    assert resolved.warnings == () and not any("retired" in line for line in resolved.choices)


def test_a_gpu_only_retired_offers_have_is_planned_with_one_warning() -> None:
    resolved = catalog_placements("azure", MachineSpec(gpu="K80"), load_offers())
    assert [p.instance_type for p in resolved.placements] == ["Standard_NC6", "Standard_NC12", "Standard_NC24"]
    [warning] = resolved.warnings
    assert warning.startswith("Standard_NC6, Standard_NC12, Standard_NC24 were retired on 2023-09-06 (azure); "
                              "the provider will likely refuse them; successors with a GPU: ")
    assert all(line.endswith("(retired 2023-09-06)") for line in resolved.choices)


def test_an_unknown_type_is_still_refused_with_the_available_types() -> None:
    with pytest.raises(SpecError, match="an available azure type: Standard_NC24ads_A100_v4, Standard_NC4as_T4_v3, "
                                        r"Standard_ND96isr_H100_v5$"):
        catalog_placements("azure", MachineSpec(instance_type="Standard_NC7"), load_offers())


def test_the_plan_carries_the_retirement_warning_and_prices_the_retired_placement(tmp_path: Path) -> None:
    home = tmp_path / "home"
    offers = [_retire(o, date(2026, 6, 30)) if o.instance_type == "g5.xlarge" else o for o in load_offers()]
    write_offers(offers, home / "offers.csv")
    plan = make_plan(RunSpec(provider="aws", machine={"instance_type": "g5.xlarge"}), home=home)
    assert [p.instance_type for p in plan.placements] == ["g5.xlarge"]
    [warning] = plan.warnings
    assert warning.startswith("g5.xlarge was retired on 2026-06-30 (aws)") and "g4dn.xlarge (T4, $0.526/h)" in warning
    # Priced as any placement: its billing rule on the estimated duration, at the retired offer's own $1.006/h.
    billed_s = billing_rule("aws_linux").billed_seconds(plan.estimated_duration_s)
    assert plan.estimated_cost_usd == pytest.approx(billed_s / 3600 * 1.006) and plan.estimated_cost_usd > 0


def test_an_available_type_plans_without_warnings(tmp_path: Path) -> None:
    plan = make_plan(RunSpec(provider="aws", machine={"instance_type": "g4dn.xlarge"}), home=tmp_path / "home")
    assert plan.warnings == ()
    assert make_plan(RunSpec(provider="local"), home=tmp_path / "home").warnings == ()


def test_p3_with_an_image_warns_that_the_image_must_carry_a_driver_for_the_v100(tmp_path: Path) -> None:
    plan = make_plan(RunSpec(provider="aws", machine={"instance_type": "p3.2xlarge", "image": IMAGE}),
                     home=tmp_path / "home")
    assert plan.image == IMAGE
    assert plan.warnings == (
        f"p3.2xlarge: the current Deep Learning AMIs do not support P2 (K80) or P3 (V100); {IMAGE} must carry an "
        "NVIDIA driver and CUDA for that GPU",)


def test_p2_with_an_image_warns_of_the_ami_and_of_what_its_catalog_row_says(tmp_path: Path) -> None:
    plan = make_plan(RunSpec(provider="aws", machine={"gpu": "K80", "image": IMAGE}), home=tmp_path / "home")
    assert plan.warnings[0] == "p2.xlarge is a previous-generation type (its catalog row says so)"
    assert plan.warnings[1].startswith("p2.xlarge: the current Deep Learning AMIs do not support P2 (K80)")
    assert IMAGE in plan.warnings[1] and len(plan.warnings) == 2


def test_p3_without_an_image_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"invalid --image: not set; accepted: an AMI id for p3.2xlarge"):
        make_plan(RunSpec(provider="aws", machine={"instance_type": "p3.2xlarge"}), home=tmp_path / "home")


def _catalog_with_images(home: Path, images: dict[tuple[str, str], str]) -> None:
    """The shipped catalog with an image named on some rows ((type, region) → image), as the user's catalog."""
    offers = load_offers()
    extra = [o.model_copy(update={"region": region}) for o in offers for (kind, region) in images
             if o.instance_type == kind and o.region != region and not any(
                 x.instance_type == kind and x.region == region for x in offers)]
    rows = [o.model_copy(update={"image": images.get((o.instance_type, o.region), "")}) for o in [*offers, *extra]]
    write_offers(rows, home / "offers.csv")


def test_the_catalog_s_image_column_is_the_image_of_its_row_region_by_region(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _catalog_with_images(home, {("g4dn.xlarge", "us-east-1"): "ami-0aaaaaaaaaaaaaaa1",
                                ("g4dn.xlarge", "us-west-2"): "ami-0bbbbbbbbbbbbbbb2"})
    plan = make_plan(RunSpec(provider="aws", machine={"instance_type": "g4dn.xlarge"}), home=home)
    assert {(p.region, p.image) for p in plan.placements} == {("us-east-1", "ami-0aaaaaaaaaaaaaaa1"),
                                                              ("us-west-2", "ami-0bbbbbbbbbbbbbbb2")}
    assert all("(catalog)" in line for line in plan.choices)
    # --image overrides every row's.
    given = make_plan(RunSpec(provider="aws", machine={"instance_type": "g4dn.xlarge", "image": IMAGE}), home=home)
    assert {p.image for p in given.placements} == {IMAGE}


def test_a_p3_row_naming_its_image_plans_without_image_with_the_driver_warning(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _catalog_with_images(home, {("p3.2xlarge", "us-east-1"): "ami-0ccccccccccccccc3"})
    plan = make_plan(RunSpec(provider="aws", machine={"instance_type": "p3.2xlarge"}), home=home)
    assert [p.image for p in plan.placements] == ["ami-0ccccccccccccccc3"]
    assert any("ami-0ccccccccccccccc3 must carry an NVIDIA driver" in w for w in plan.warnings)


def test_rows_without_an_image_boot_each_cloud_s_default(tmp_path: Path) -> None:
    aws = make_plan(RunSpec(provider="aws", machine={"instance_type": "g4dn.xlarge"}), home=tmp_path)
    azure = make_plan(RunSpec(provider="azure", machine={"instance_type": "Standard_NC4as_T4_v3"}), home=tmp_path)
    assert {p.image for p in aws.placements} == {AWS_DLAMI} and aws.image == AWS_DLAMI
    assert {p.image for p in azure.placements} == {AZURE_UBUNTU_HPC}


@pytest.mark.parametrize(("provider", "image", "accepted"), [
    ("aws", "microsoft-dsvm:ubuntu-hpc:2204:latest", "an AMI id"),
    ("azure", "ami-0123456789abcdef0", "publisher:offer:sku:version"),
    ("rented", "ami-0123456789abcdef0", "empty on a rented or owned row"),
])
def test_a_catalog_row_with_an_image_its_cloud_cannot_boot_is_refused(provider: str, image: str, accepted: str) -> None:
    row = next(o for o in load_offers() if o.provider == provider)
    with pytest.raises(ValueError, match=accepted):
        Offer.model_validate({**row.model_dump(), "image": image})


AZURE_T4 = {"instance_type": "Standard_NC4as_T4_v3"}


@pytest.fixture
def no_azure_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_SUBSCRIPTION_ID", "ORCHESTRATE_AZURE_CLOUD"):
        monkeypatch.delenv(name, raising=False)


def test_an_azure_plan_without_a_subscription_says_what_a_launch_needs(
    tmp_path: Path, no_azure_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = make_plan(RunSpec(provider="azure", machine=AZURE_T4), home=tmp_path / "home")
    [needs] = plan.warnings
    assert needs.startswith("a launch needs AZURE_SUBSCRIPTION_ID (not set; or subscription_id in ")
    assert "Azure credentials (DefaultAzureCredential" in needs and "None" not in needs
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    assert make_plan(RunSpec(provider="azure", machine=AZURE_T4), home=tmp_path / "home").warnings == ()


@pytest.mark.parametrize(("env", "field"), [({"AZURE_SUBSCRIPTION_ID": "prod"}, "AZURE_SUBSCRIPTION_ID"),
                                            ({"ORCHESTRATE_AZURE_CLOUD": "Mars"}, "ORCHESTRATE_AZURE_CLOUD")])
def test_an_azure_setting_that_is_set_but_wrong_is_still_refused_by_the_plan(
    tmp_path: Path, no_azure_settings: None, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SpecError, match=f"invalid {field}: received '{next(iter(env.values()))}'"):
        make_plan(RunSpec(provider="azure", machine=AZURE_T4), home=tmp_path / "home")
