"""Spot prices at launch: a spot machine is priced at what its cloud quotes for its placement when it is launched,
at the catalog's price only when the cloud does not say (a launch never fails for its price).

A price belongs to the placement, not to the provider that makes the machine: the run's launch step
(``orchestrator.provision``) asks here once the provider has given the machines, when their zone is known.
AWS quotes the newest Linux spot price of ``DescribeSpotPriceHistory`` for the type in the machine's zone; Azure
the Retail Prices API (no credentials), which is never asked for a loopback endpoint (the tests' ARM fake).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.catalog.refresh import AWS_SPOT_PRODUCT, fetch_azure_prices, newest_zone_prices
from orchestrator.clouds import aws, azure
from orchestrator.errors import OrchestrateError
from orchestrator.machine import Placement

AWS_SOURCE = "DescribeSpotPriceHistory"
AZURE_SOURCE = "Azure Retail Prices API"


@dataclass(frozen=True)
class PriceQuote:
    """A spot price a cloud quoted for a placement."""

    text: str  # as the cloud wrote it
    price: float  # USD per hour
    at: str  # ISO time the price was set (or read)
    source: str  # who quoted it: AWS_SOURCE, AZURE_SOURCE


SpotQuoter = Callable[[Placement], PriceQuote | None]


def at_quote(placement: Placement, quote: PriceQuote | None) -> Placement:
    """The placement priced at the quote (unless the user fixed its price, when the quote is only recorded); without a
    quote it keeps the catalog's price and says so (``price_source`` stays ``catalog``)."""
    if quote is None:
        return replace(placement, price_source="catalog", price_quoted=None, price_quoted_at=None)
    price = placement.price_per_hour if placement.price_fixed else quote.price
    return replace(placement, price_per_hour=price, price_source=quote.source, price_quoted=quote.text,
                   price_quoted_at=quote.at)


def aws_quote(placement: Placement, *, ec2: Callable[[str], Any]) -> PriceQuote | None:
    """The newest Linux spot price EC2 quotes for the placement's type in its zone now; None when the call fails or
    answers no usable price.

    Args:
        ec2: region → an EC2 client.
    """
    region, zone = placement.region or "", placement.zone or ""
    try:
        with aws.translating(what=f"reading the spot price of {placement.instance_type} in {zone or region}"):
            history = ec2(region).describe_spot_price_history(
                InstanceTypes=[placement.instance_type], ProductDescriptions=[AWS_SPOT_PRODUCT], AvailabilityZone=zone,
                StartTime=datetime.now(UTC),  # the price in effect now (its last change), newest first
            ).get("SpotPriceHistory") or []
    except OrchestrateError:
        return None
    found = newest_zone_prices(history).get((placement.instance_type, zone))
    if found is None or found.at == datetime.min.replace(tzinfo=UTC):
        return None  # none for this zone, or no time it was set: the catalog's price stands
    return PriceQuote(found.text, found.per_hour, found.at.isoformat(), AWS_SOURCE)


def azure_quote(
    placement: Placement, *, fetch: Callable[..., Mapping[str, Any]] = fetch_azure_prices
) -> PriceQuote | None:
    """The Spot price of the placement's size in its region now, from the Retail Prices API; None when the API does
    not answer or has none."""
    try:
        price = fetch([placement.instance_type], placement.region or "", timeout_s=5.0, attempts=1).get(
            placement.instance_type)
    except OrchestrateError:
        return None
    per_hour = price.spot_per_hour if price is not None else None
    if not per_hour or per_hour <= 0:
        return None
    return PriceQuote(f"{per_hour:g}", per_hour, datetime.now(UTC).isoformat(timespec="seconds"), AZURE_SOURCE)


def launch_quoter(provider: str, *, home: Path, options: Mapping[str, Any]) -> SpotQuoter | None:
    """How a provider's spot machines are priced at launch (None: they keep the catalog's price).

    Args:
        options: the provider's settings of the run (aws: ``profile``, ``endpoint_url``).
    """
    if provider == "aws":
        def ec2(region: str) -> Any:
            return aws.client("ec2", region=region or None, profile=options.get("profile"),
                              endpoint_url=options.get("endpoint_url"))

        return lambda placement: aws_quote(placement, ec2=ec2)
    if provider == "azure":
        try:
            if azure.settings(home).loopback:
                return None  # the tests' ARM fake: no price to ask the internet for
        except OrchestrateError:
            return None
        return azure_quote
    return None
