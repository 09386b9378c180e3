"""Spot prices at launch (orchestrator.catalog.spot): what each cloud quotes for a launched machine's placement, and
what stands when it does not quote. EC2's answers come from moto, shaped by botocore hooks; Azure's Retail Prices API
is a function the test hands in. The run's launch step that calls these is tested in tests/providers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.catalog.refresh import Price
from orchestrator.catalog.spot import AWS_SOURCE, AZURE_SOURCE, at_quote, aws_quote, azure_quote, launch_quoter
from orchestrator.machine import Machine, Placement
from orchestrator.providers.aws.instance import AwsProvider
from orchestrator.teardown import price_machines
from tests.fakes import aws as aws_fakes
from tests.fakes.aws import PLACEMENT, HookedClients, launch_request, refusal, spot_price_answer

moto_aws = aws_fakes.moto_aws  # the fixtures
sleeps = aws_fakes.sleeps
clients = aws_fakes.clients
provider = aws_fakes.provider

SPOT = replace(PLACEMENT, spot=True, price_per_hour=0.302)  # the catalog's spot price


def _quoted(machines: list[Machine], clients: HookedClients) -> list[Machine]:
    """The machines of one launch priced as the run's launch step prices them (one quote: one type, one zone), with
    the test's EC2 clients."""
    quote = aws_quote(machines[0].placement, ec2=lambda region: clients(region, True))
    return [replace(machine, placement=at_quote(machine.placement, quote)) for machine in machines]


def test_a_spot_machine_is_priced_at_the_newest_spot_price_ec2_quotes_for_its_zone(
    provider: AwsProvider, clients: HookedClients
) -> None:
    newest = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
    hook = spot_price_answer(("0.2871", newest - timedelta(hours=3)), ("0.3125", newest))
    clients.hooks["before-call.ec2.DescribeSpotPriceHistory"] = hook
    machines = _quoted(provider.launch(launch_request("r-quote", placement=SPOT, count=2)), clients)
    [asked] = hook.asked  # type: ignore[attr-defined]
    assert (asked["InstanceType.1"], asked["ProductDescription.1"]) == ("g5.xlarge", "Linux/UNIX")
    assert asked["AvailabilityZone"] == machines[0].placement.zone and asked["StartTime"]
    for machine in machines:
        placement = machine.placement
        assert placement.price_per_hour == 0.3125  # not the catalog's 0.302, not the older quote
        assert (placement.price_source, placement.price_quoted, placement.price_quoted_at) == (
            AWS_SOURCE, "0.3125", newest.isoformat())
        assert Machine.from_record(machine.to_record()) == machine  # as the store keeps it
    # 30 s of a machine: billed 60 s (AWS's minimum) at the quoted price.
    machine = machines[0]
    lines = price_machines([machine], gone_at={machine.id: machine.launched_at + timedelta(seconds=30)},
                           execute_start=None, execute_end=None, until=machine.launched_at)
    assert sum(line.amount_usd for line in lines) == pytest.approx(60 * 0.3125 / 3600)
    assert {line.price_per_hour for line in lines} == {0.3125}


def test_a_price_the_user_fixed_is_kept_and_the_spot_quote_only_recorded(
    provider: AwsProvider, clients: HookedClients
) -> None:
    clients.hooks["before-call.ec2.DescribeSpotPriceHistory"] = spot_price_answer(
        ("0.3125", datetime(2026, 11, 30, tzinfo=UTC)))
    fixed = replace(SPOT, price_per_hour=0.25, price_fixed=True)
    [machine] = _quoted(provider.launch(launch_request("r-fixed", placement=fixed)), clients)
    placement = machine.placement
    assert placement.price_per_hour == 0.25 and placement.price_quoted == "0.3125"


@pytest.mark.parametrize("answer", ["refused", "empty", "another zone"])
def test_a_spot_price_ec2_does_not_give_keeps_the_catalog_price_and_says_so(
    provider: AwsProvider, clients: HookedClients, answer: str
) -> None:
    at = datetime(2026, 11, 30, tzinfo=UTC)
    clients.hooks["before-call.ec2.DescribeSpotPriceHistory"] = {
        "refused": lambda **_: refusal("UnauthorizedOperation", "not allowed: ec2:DescribeSpotPriceHistory"),
        "empty": spot_price_answer(),
        "another zone": spot_price_answer(("0.3125", at), zone="us-east-1z"),
    }[answer]
    [machine] = _quoted(provider.launch(launch_request("r-noquote", placement=SPOT)), clients)
    placement = machine.placement
    assert placement.price_per_hour == 0.302
    assert (placement.price_source, placement.price_quoted) == ("catalog", None)
    assert len(provider.list_machines(run_id="r-noquote")) == 1  # launched all the same


def test_the_provider_itself_prices_nothing(provider: AwsProvider, clients: HookedClients) -> None:
    hook = spot_price_answer(("0.3125", datetime(2026, 11, 30, tzinfo=UTC)))
    clients.hooks["before-call.ec2.DescribeSpotPriceHistory"] = hook
    [spot] = provider.launch(launch_request("r-spot", placement=SPOT))
    [on_demand] = provider.launch(launch_request("r-ondemand"))
    assert hook.asked == []  # type: ignore[attr-defined]
    assert (spot.placement.price_per_hour, on_demand.placement.price_per_hour) == (0.302, 1.006)
    assert spot.placement.price_source == on_demand.placement.price_source == "catalog"


AZURE_SPOT = Placement("azure", "Standard_NC4as_T4_v3", region="eastus", spot=True, price_per_hour=0.158)


def test_azure_quotes_the_retail_spot_price_of_the_size_in_its_region() -> None:
    asked: list[tuple[list[str], str]] = []

    def fetch(skus: list[str], region: str, **_: Any) -> dict[str, Price]:
        asked.append((list(skus), region))
        return {"Standard_NC4as_T4_v3": Price(on_demand_per_hour=0.526, spot_per_hour=0.21)}

    quote = azure_quote(AZURE_SPOT, fetch=fetch)
    assert asked == [(["Standard_NC4as_T4_v3"], "eastus")]
    assert quote is not None and (quote.price, quote.text, quote.source) == (0.21, "0.21", AZURE_SOURCE)
    assert at_quote(AZURE_SPOT, quote).price_per_hour == 0.21  # not the catalog's 0.158


@pytest.mark.parametrize("answer", [{}, {"Standard_NC4as_T4_v3": Price(on_demand_per_hour=0.526, spot_per_hour=None)}])
def test_azure_without_a_spot_price_keeps_the_catalog_price(answer: dict[str, Price]) -> None:
    quote = azure_quote(AZURE_SPOT, fetch=lambda *_, **__: answer)
    assert quote is None and at_quote(AZURE_SPOT, quote).price_per_hour == 0.158


def test_no_quote_is_asked_of_the_internet_for_a_loopback_azure_or_a_box(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("ORCHESTRATE_AZURE_CLOUD", "http://127.0.0.1:9")
    assert launch_quoter("azure", home=tmp_path, options={}) is None
    assert launch_quoter("rented", home=tmp_path, options={}) is None
    assert launch_quoter("local", home=tmp_path, options={}) is None
    assert launch_quoter("aws", home=tmp_path, options={}) is not None
