"""Refreshes the catalog's prices from the AWS Price List API and the Azure Retail Prices API.

Both APIs are reached only here. AWS is asked through :mod:`orchestrator.clouds.aws` (its client factory and
its error map; boto3 is imported only when a price is fetched, so importing this module stays cheap); the
Azure API needs no SDK and its errors become :mod:`orchestrator.errors` families here, once. The refreshed
catalog is written atomically to ``$ORCHESTRATE_HOME/offers.csv``; the shipped file is never touched.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from orchestrator.catalog.offers import Offer, load_offers, user_catalog_path, write_offers
from orchestrator.clouds import aws
from orchestrator.clouds.aws import HTTP_TIMEOUT_S
from orchestrator.errors import ProviderError, SpecError

AZURE_PRICES_URL = "https://prices.azure.com/api/retail/prices"
AWS_SPOT_PRODUCT = "Linux/UNIX"  # DescribeSpotPriceHistory's name for Linux (Amazon VPC)
AWS_PRICING_REGION = "us-east-1"  # the Price List API answers from a few regions; prices cover every region
REFRESH_PROVIDERS = ("aws", "azure")
HTTP_ATTEMPTS = 3  # tries per Azure page, the first included
MAX_PAGES = 50  # pages followed per request; a type or size in one region is a page or two


@dataclass(frozen=True)
class Price:
    """Hourly USD prices of one instance type in one region, as an API states them."""

    on_demand_per_hour: float
    spot_per_hour: float | None  # None: not offered on spot there (AWS: from DescribeSpotPriceHistory, not here)


@dataclass(frozen=True)
class SpotQuote:
    """The current spot price of one instance type in a region: its cheapest zone's."""

    per_hour: float
    zone: str  # the zone with that price
    zones: int  # how many zones offer it on spot


@dataclass(frozen=True)
class OfferUpdate:
    """What a refresh did to one catalog row."""

    instance_type: str
    region: str
    old: Offer | None  # None: the row is new (another region was asked for)
    new: Offer | None  # None: the API had no price for it, so the row was left as it was

    def describe(self) -> str:
        """Returns one line for the user, e.g. ``p3.2xlarge us-east-1: on-demand $3.06 → $3.06 (unchanged)``."""
        name = f"{self.instance_type} {self.region}"
        if self.new is None:
            return f"{name}: no price found; row left as it was"
        if self.old is None:
            text = f"{name}: new row, on-demand ${self.new.on_demand_per_hour:g}"
        else:
            text = f"{name}: on-demand ${self.old.on_demand_per_hour:g} → ${self.new.on_demand_per_hour:g}"
        old_spot = self.old.spot_per_hour if self.old else None
        if self.new.spot_per_hour != old_spot:
            text += f", spot {_dollars(old_spot)} → {_dollars(self.new.spot_per_hour)}"
        if self.old is not None and (self.old.on_demand_per_hour, old_spot) == (
            self.new.on_demand_per_hour, self.new.spot_per_hour
        ):
            text += " (unchanged)"
        return text


def _dollars(value: float | None) -> str:
    return "-" if value is None else f"${value:g}"


@dataclass(frozen=True)
class RefreshResult:
    """The outcome of :func:`refresh_catalog`."""

    path: Path  # the catalog written
    updates: list[OfferUpdate]


# ---------------------------------------------------------------------------------------------------- AWS


def fetch_aws_prices(
    instance_types: Iterable[str],
    region: str,
    *,
    endpoint_url: str | None = None,
    attempts: int = aws.ATTEMPTS,
) -> dict[str, Price]:
    """Returns Linux, shared-tenancy, on-demand prices from the AWS Price List API (``pricing:GetProducts``).

    Credentials come from boto3's default chain, as for any client (the API is free but signed). Each type's
    pages are followed up to :data:`MAX_PAGES`.

    Args:
        instance_types: EC2 instance types, e.g. ``p3.2xlarge``.
        region: the region code to price, e.g. ``us-east-1``.
        endpoint_url: another endpoint for the API (tests serve one on 127.0.0.1).
        attempts: tries per call, the first included.

    Returns:
        A price per instance type the API knows; types it does not are absent.

    Raises:
        AuthError: credentials are missing or refused.
        ProviderError: the API could not be reached or answered with an error.
    """
    prices: dict[str, Price] = {}
    with aws.translating(what="AWS Price List API"):
        pricing = aws.client("pricing", region=AWS_PRICING_REGION, endpoint_url=endpoint_url, attempts=attempts)
        paginator = pricing.get_paginator("get_products")
        for instance_type in instance_types:
            pages = paginator.paginate(
                ServiceCode="AmazonEC2", FormatVersion="aws_v1", Filters=_aws_filters(instance_type, region),
                PaginationConfig={"PageSize": 100},
            )
            documents = [document for page in itertools.islice(pages, MAX_PAGES)
                         for document in page.get("PriceList", [])]
            price = parse_aws_price_list(documents)
            if price is not None:
                prices[instance_type] = price
    return prices


def fetch_aws_spot_prices(
    instance_types: Iterable[str],
    region: str,
    *,
    endpoint_url: str | None = None,
    attempts: int = aws.ATTEMPTS,
    now: datetime | None = None,
) -> dict[str, SpotQuote]:
    """Returns the current Linux/UNIX spot price of each instance type in a region (EC2 ``DescribeSpotPriceHistory``).

    Asked with start = end = now, the API answers each zone's price in effect now (its last change before
    then). The quote is the lowest zone's price, as AWS's own spot pricing page shows, with the zone named.
    Pages are followed up to :data:`MAX_PAGES`.

    Args:
        instance_types: EC2 instance types, e.g. ``p3.2xlarge``.
        region: the region code, e.g. ``us-east-1``.
        endpoint_url: another EC2 endpoint (tests serve one on 127.0.0.1).
        attempts: tries per call, the first included.
        now: the moment to price (default: now, UTC).

    Returns:
        A quote per instance type offered on spot there; types without spot capacity are absent.

    Raises:
        AuthError: credentials are missing or refused (it needs ``ec2:DescribeSpotPriceHistory``).
        ProviderError: the API could not be reached or answered with an error.
    """
    names = sorted(set(instance_types))
    if not names:
        return {}
    moment = now or datetime.now(UTC)
    with aws.translating(what="EC2 API"):
        ec2 = aws.client("ec2", region=region, endpoint_url=endpoint_url, attempts=attempts)
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=names, ProductDescriptions=[AWS_SPOT_PRODUCT], StartTime=moment, EndTime=moment,
            PaginationConfig={"PageSize": 1000},
        )
        items: list[Mapping[str, Any]] = [item for page in itertools.islice(pages, MAX_PAGES)
                                          for item in page.get("SpotPriceHistory", [])]
    return parse_spot_price_history(items)


@dataclass(frozen=True)
class ZonePrice:
    """One zone's newest Linux/UNIX spot price of one instance type."""

    at: datetime  # when EC2 set it (datetime.min when EC2 did not say)
    per_hour: float
    text: str  # as EC2 wrote it


def newest_zone_prices(items: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], ZonePrice]:
    """Returns, per (instance type, zone), the newest Linux/UNIX spot price of a ``DescribeSpotPriceHistory`` answer.

    Items of another product (Windows, SUSE…), unparsable and non-positive prices are skipped.
    """
    newest: dict[tuple[str, str], ZonePrice] = {}
    for item in items:
        if item.get("ProductDescription", AWS_SPOT_PRODUCT) != AWS_SPOT_PRODUCT:
            continue
        try:
            text = str(item["SpotPrice"])
            price = float(text)
            key = (str(item["InstanceType"]), str(item["AvailabilityZone"]))
        except (KeyError, TypeError, ValueError):
            continue
        stamp = item.get("Timestamp")
        when = stamp if isinstance(stamp, datetime) else datetime.min.replace(tzinfo=UTC)
        if price > 0 and (key not in newest or when > newest[key].at):
            newest[key] = ZonePrice(when, price, text)
    return newest


def parse_spot_price_history(items: Iterable[Mapping[str, Any]]) -> dict[str, SpotQuote]:
    """Returns, per instance type, the lowest of its zones' newest Linux/UNIX spot prices."""
    newest = newest_zone_prices(items)
    quotes: dict[str, SpotQuote] = {}
    for (instance_type, zone), found in sorted(newest.items()):
        zones = sum(1 for name, _ in newest if name == instance_type)
        best = quotes.get(instance_type)
        if best is None or found.per_hour < best.per_hour:
            quotes[instance_type] = SpotQuote(per_hour=found.per_hour, zone=zone, zones=zones)
    return quotes


def _aws_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    terms = {
        "instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux", "tenancy": "Shared",
        "preInstalledSw": "NA", "capacitystatus": "Used",
    }
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in terms.items()]


def parse_aws_price_list(documents: Iterable[str | Mapping[str, Any]]) -> Price | None:
    """Returns the on-demand hourly price in a ``GetProducts`` PriceList, or None when it holds none.

    Each document is a product with its terms (``terms → OnDemand → … → priceDimensions → … →
    pricePerUnit → USD``). Products with another OS, tenancy, pre-installed software or capacity status are
    skipped, in case the filters let them through; the plain ``RunInstances`` operation is preferred over
    others (such as ``RunInstances:0002``, Windows).
    """
    candidates: list[tuple[int, float]] = []
    for document in documents:
        product = json.loads(document) if isinstance(document, str) else document
        attributes = product.get("product", {}).get("attributes", {})
        wanted = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}
        if any(attributes.get(key, value) != value for key, value in wanted.items()):
            continue
        if attributes.get("marketoption", "OnDemand") != "OnDemand":  # e.g. capacity blocks
            continue
        rank = 0 if attributes.get("operation", "RunInstances") == "RunInstances" else 1
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = dimension.get("pricePerUnit", {}).get("USD")
                if usd is None or dimension.get("unit", "Hrs") not in ("Hrs", "Hours"):
                    continue
                value = float(usd)
                if value > 0:
                    candidates.append((rank, value))
    if not candidates:
        return None
    return Price(on_demand_per_hour=min(candidates)[1], spot_per_hour=None)


# -------------------------------------------------------------------------------------------------- Azure


def _azure_filter(sku: str, region: str) -> str:
    return (
        f"serviceName eq 'Virtual Machines' and armSkuName eq '{sku}' and armRegionName eq '{region}' "
        "and priceType eq 'Consumption'"
    )


def _get_json(
    url: str, *, timeout_s: float, attempts: int, sleep: Callable[[float], None]
) -> dict[str, Any]:
    """GETs a JSON document, retrying throttling, server errors and network failures a bounded number of times.

    Raises:
        ProviderError: a client error (at once), or the last failure after ``attempts`` tries.
    """
    shown = urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl()
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "orchestrate"})
    problem = ""
    for attempt in range(1, attempts + 1):
        retry_after = 0.0
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                body = response.read()
            document = json.loads(body)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            return document
        except urllib.error.HTTPError as error:
            problem = f"HTTP {error.code} {error.reason}"
            if error.code != 429 and error.code < 500:
                raise ProviderError(f"Azure Retail Prices API at {shown} answered {problem}",
                                    hint="check --region and --endpoint-url") from None
            retry_after = _seconds(error.headers.get("Retry-After") if error.headers else None)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            problem = f"cannot connect: {reason}"
        except ValueError as error:
            raise ProviderError(f"Azure Retail Prices API at {shown} sent a body that is not a price list: {error}"
                                ) from None
        if attempt < attempts:
            sleep(min(30.0, max(retry_after, 2.0 ** (attempt - 1))))
    raise ProviderError(f"Azure Retail Prices API at {shown}: {problem} (gave up after {attempts} tries)",
                        hint="try again later, or pass --endpoint-url")


def _seconds(text: str | None) -> float:
    try:
        return max(0.0, float(text)) if text else 0.0
    except ValueError:
        return 0.0


def fetch_azure_prices(
    skus: Iterable[str],
    region: str,
    *,
    base_url: str = AZURE_PRICES_URL,
    timeout_s: float = HTTP_TIMEOUT_S,
    attempts: int = HTTP_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Price]:
    """Returns Linux pay-as-you-go and Spot hourly prices from the Azure Retail Prices API.

    The API needs no credentials. Every page is followed (``NextPageLink``), up to :data:`MAX_PAGES`.

    Args:
        skus: ARM VM sizes, e.g. ``Standard_NC4as_T4_v3``.
        region: the ARM region name, e.g. ``eastus``.
        base_url: the API's address (tests serve one on 127.0.0.1).
        timeout_s: seconds to wait for each response.
        attempts: tries per page, the first included.
        sleep: waits between tries (tests pass a fake).

    Returns:
        A price per size the API knows; sizes it does not are absent.

    Raises:
        ProviderError: the API could not be reached or answered with an error.
    """
    prices: dict[str, Price] = {}
    for sku in skus:
        url: str | None = f"{base_url}?$filter={urllib.parse.quote(_azure_filter(sku, region))}"
        items: list[Mapping[str, Any]] = []
        for _ in range(MAX_PAGES):
            if not url:
                break
            page = _get_json(url, timeout_s=timeout_s, attempts=attempts, sleep=sleep)
            items.extend(item for item in page.get("Items", []) if isinstance(item, dict))
            url = page.get("NextPageLink") or None
        price = parse_azure_items(items, sku, region)
        if price is not None:
            prices[sku] = price
    return prices


def parse_azure_items(items: Iterable[Mapping[str, Any]], sku: str, region: str) -> Price | None:
    """Picks the Linux pay-as-you-go and Spot hourly prices of one VM size out of Retail Prices API items.

    Linux meters are those whose productName does not say Windows; the Spot meter's skuName or meterName ends
    in " Spot" (``NC4as T4 v3 Spot``); Low Priority meters are ignored. Where several meters qualify, the newest
    (effectiveStartDate) wins. Returns None when there is no pay-as-you-go price.
    """
    newest: dict[str, tuple[str, float]] = {}
    for item in items:
        if (str(item.get("armSkuName", "")).lower() != sku.lower()
                or str(item.get("armRegionName", "")).lower() != region.lower()
                or item.get("type", "Consumption") != "Consumption"
                or "windows" in str(item.get("productName", "")).lower()
                or item.get("unitOfMeasure", "1 Hour") != "1 Hour"):
            continue
        names = [str(item.get(key, "")).strip().lower() for key in ("skuName", "meterName")]
        if any(name.endswith(" low priority") for name in names):
            continue
        kind = "spot" if any(name.endswith(" spot") for name in names) else "on_demand"
        price = float(item.get("retailPrice", item.get("unitPrice", 0)) or 0)
        started = str(item.get("effectiveStartDate", ""))
        if price > 0 and (kind not in newest or started > newest[kind][0]):
            newest[kind] = (started, price)
    if "on_demand" not in newest:
        return None
    spot = newest.get("spot")
    return Price(on_demand_per_hour=newest["on_demand"][1], spot_per_hour=spot[1] if spot else None)


# ------------------------------------------------------------------------------------------------ refresh


def refresh_catalog(
    provider: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    spot_endpoint_url: str | None = None,
    home: Path | None = None,
    today: date | None = None,
) -> RefreshResult:
    """Fetches current prices for the catalog's available offers of one provider and writes the user catalog.

    Every available offer of the provider is priced in its own region, or, with ``region``, each of its
    instance types is priced there (a row is added where the catalog had none for that region). Offers the
    API has no price for are left as they were. Nothing is written unless every request succeeded.

    Args:
        provider: aws or azure.
        region: price this region instead of each row's own.
        endpoint_url: the API's address (AWS: the Price List API's endpoint; Azure: the prices API's base URL).
        spot_endpoint_url: AWS only: the EC2 endpoint asked for spot prices (default: the region's own).
        home: the Orchestrate home (default ``$ORCHESTRATE_HOME``).
        today: the date written as ``as_of`` (default today).

    Raises:
        SpecError: an unknown provider, or the catalog has no available offers of it.
        AuthError, ProviderError: the API failed; the catalog on disk is unchanged.
    """
    if provider not in REFRESH_PROVIDERS:
        raise SpecError("provider", provider, " or ".join(REFRESH_PROVIDERS))
    today = today or date.today()
    offers = load_offers(home=home)
    current = [offer for offer in offers if offer.provider == provider and not offer.retired]
    if not current:
        raise SpecError("provider", provider, "a provider with available offers in the catalog",
                        message=f"the catalog has no available {provider} offers to refresh")
    # (instance type, region) → the row to update, or the row to copy the spec from
    targets: dict[tuple[str, str], Offer] = {}
    for offer in current:
        targets.setdefault((offer.instance_type, region or offer.region), offer)
    by_region: dict[str, list[str]] = {}
    for instance_type, target_region in targets:
        by_region.setdefault(target_region, []).append(instance_type)

    fetched: dict[tuple[str, str], Price] = {}
    quotes: dict[tuple[str, str], SpotQuote] = {}
    for target_region, instance_types in by_region.items():
        if provider == "aws":
            on_demand = fetch_aws_prices(instance_types, target_region, endpoint_url=endpoint_url)
            spot = fetch_aws_spot_prices(list(on_demand), target_region, endpoint_url=spot_endpoint_url)
            prices = {name: replace(price, spot_per_hour=spot[name].per_hour if name in spot else None)
                      for name, price in on_demand.items()}
            quotes.update({(name, target_region): quote for name, quote in spot.items()})
        else:
            prices = fetch_azure_prices(instance_types, target_region, base_url=endpoint_url or AZURE_PRICES_URL)
        fetched.update({(name, target_region): price for name, price in prices.items()})
    if not fetched:
        asked = ", ".join(sorted({name for name, _ in targets}))
        raise ProviderError(
            f"the {provider} price API returned no prices for {asked} in {', '.join(sorted(by_region))}",
            hint="check --region (AWS: a region code such as us-east-1; Azure: an ARM name such as eastus)",
        )

    by_key = {(o.provider, o.instance_type, o.region): i for i, o in enumerate(offers)}
    updated = list(offers)
    updates: list[OfferUpdate] = []
    for (instance_type, target_region), template in targets.items():
        index = by_key.get((provider, instance_type, target_region))
        old = updated[index] if index is not None else None
        price = fetched.get((instance_type, target_region))
        if price is None:
            updates.append(OfferUpdate(instance_type, target_region, old, None))
            continue
        new = _priced(old or template, price, provider=provider, region=target_region, today=today,
                      quote=quotes.get((instance_type, target_region)))
        if index is None:
            updated.append(new)
        else:
            updated[index] = new
        updates.append(OfferUpdate(instance_type, target_region, old, new))

    path = user_catalog_path(home)
    write_offers(updated, path)
    return RefreshResult(path=path, updates=updates)


def _priced(offer: Offer, price: Price, *, provider: str, region: str, today: date,
            quote: SpotQuote | None = None) -> Offer:
    if provider == "aws":
        spot = (f"EC2 DescribeSpotPriceHistory, Linux/UNIX, lowest of {quote.zones} zone(s) ({quote.zone})"
                if quote else "not offered on spot in this region (EC2 DescribeSpotPriceHistory)")
        source = (f"on-demand: AWS Price List API (GetProducts, AmazonEC2, {region}, Linux, shared tenancy); "
                  f"spot: {spot}; fetched {today.isoformat()}; spec: as before")
    else:
        spot = ("its Spot meter" if price.spot_per_hour is not None
                else "no Spot meter for this size here, so not offered on spot")
        source = (f"Azure Retail Prices API (prices.azure.com, {region}): on-demand: its Linux pay-as-you-go meter; "
                  f"spot: {spot}; fetched {today.isoformat()}; spec: as before")
    return offer.model_copy(update={"region": region, "on_demand_per_hour": price.on_demand_per_hour,
                                    "spot_per_hour": price.spot_per_hour, "as_of": today, "source": source})
