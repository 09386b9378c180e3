"""Buy versus rent: each option's monthly cost at a number of GPU-hours, and where owning starts to win.

Every option's month is a straight line in GPU-hours H: ``fixed_per_month + per_gpu_hour × H``.

- Cloud on-demand and spot (catalog offers): no fixed part; the offer's price per GPU-hour.
- Rented by the month (inventory ``price: {per_month: …}``): the rent is fixed; nothing per hour.
- Owned box (inventory ``price: {owned: …}``, or given on the command line): the purchase over the months of
  its life is fixed (it loses value used or not); the power it draws is paid per hour of use.
- A box priced per hour (inventory ``price: {per_hour: …}``): per GPU-hour, no fixed part.

Catalog rows of rented and owned boxes are left out: the catalog holds their hourly price at a stated
utilisation, not the fixed and variable parts a break-even needs. Put such boxes in the inventory.

Dollars per million images assume the measured per-GPU throughput on every option, so compare options with
the GPU that was measured (``--gpu``) to compare like with like.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.cost import HOURS_PER_MONTH
from orchestrator.errors import SpecError


@dataclass(frozen=True)
class CostOption:
    """One way to get GPU-hours, priced as a line: fixed per month plus a price per GPU-hour."""

    name: str  # e.g. "aws p3.2xlarge (us-east-1)" or an inventory box's name
    kind: str  # on-demand, spot, rented-monthly, hourly or owned
    accelerator: str
    gpu_count: int
    fixed_per_month: float  # USD paid whatever the use: rent, or purchase over the lifetime in months
    per_gpu_hour: float  # USD per GPU-hour of use: the hourly price, or the power an owned box draws
    capacity_gpu_hours: float | None  # GPU-hours one box has in a month; None for the cloud (as many as wanted)
    source: str

    @property
    def owned(self) -> bool:
        """True for a box that is bought rather than rented."""
        return self.kind == "owned"

    def monthly_cost(self, gpu_hours: float) -> float:
        """Returns USD for a month with ``gpu_hours`` GPU-hours of use."""
        return self.fixed_per_month + self.per_gpu_hour * gpu_hours

    def usd_per_million_images(self, gpu_hours: float, images_per_sec_per_gpu: float) -> float | None:
        """Returns USD per million images at this use and throughput (None without either)."""
        if gpu_hours <= 0 or images_per_sec_per_gpu <= 0:
            return None
        return self.monthly_cost(gpu_hours) / (gpu_hours * 3600.0 * images_per_sec_per_gpu) * 1e6


@dataclass(frozen=True)
class BreakEven:
    """Where an owned box and another option cost the same per month."""

    owned: str  # the owned option's name
    other: str  # the option it is compared with
    hours: float | None  # GPU-hours per month at which the two cost the same; None when they never do
    owning_wins: str  # "above" or "below" ``hours``, or "always" or "never"

    def describe(self) -> str:
        """Returns one line a user reads, e.g. ``owning beats … above 18.5 GPU-hours/month``."""
        if self.owning_wins in ("always", "never"):
            return f"owning {self.owned} beats {self.other}: {self.owning_wins}"
        assert self.hours is not None
        return f"owning {self.owned} beats {self.other} {self.owning_wins} {self.hours:.1f} GPU-hours/month"


def break_even(owned: CostOption, other: CostOption) -> BreakEven:
    """Solves ``owned.monthly_cost(H) == other.monthly_cost(H)`` for H.

    With the owned box dearer up front and cheaper per hour (the usual case against an hourly rental),
    owning wins above ``(owned fixed − other fixed) / (other per hour − owned per hour)``.
    """
    fixed_gap = owned.fixed_per_month - other.fixed_per_month
    hourly_gap = other.per_gpu_hour - owned.per_gpu_hour  # what each hour saves by owning
    if hourly_gap == 0:
        return BreakEven(owned.name, other.name, None, "always" if fixed_gap < 0 else "never")
    hours = fixed_gap / hourly_gap
    if hourly_gap > 0:
        return BreakEven(owned.name, other.name, hours, "above") if hours > 0 else \
            BreakEven(owned.name, other.name, None, "always")
    return BreakEven(owned.name, other.name, hours, "below") if hours > 0 else \
        BreakEven(owned.name, other.name, None, "never")


def owned_option(
    name: str, *, purchase_usd: float, lifetime_years: float, watts: float, kwh_usd: float, gpu_count: int = 1,
    accelerator: str = "", source: str = "",
) -> CostOption:
    """Returns an owned box as an option: purchase / lifetime months fixed, power per GPU-hour.

    Raises:
        SpecError: a negative figure, a lifetime of 0 years or less, or no GPUs.
    """
    for field, value in (("purchase_usd", purchase_usd), ("watts", watts), ("kwh_usd", kwh_usd)):
        if value < 0 or math.isnan(value):
            raise SpecError(field, value, "a number >= 0")
    if not lifetime_years > 0:
        raise SpecError("lifetime_years", lifetime_years, "a number of years greater than 0")
    if gpu_count < 1:
        raise SpecError("gpu_count", gpu_count, "1 or more GPUs")
    box_hour = watts / 1000.0 * kwh_usd  # the whole box draws the power whatever GPU it is used through
    return CostOption(
        name=name, kind="owned", accelerator=accelerator, gpu_count=gpu_count,
        fixed_per_month=purchase_usd / (lifetime_years * 12.0), per_gpu_hour=box_hour / gpu_count,
        capacity_gpu_hours=HOURS_PER_MONTH * gpu_count, source=source,
    )


def catalog_options(offers: Iterable[object], *, gpu: str | None = None) -> list[CostOption]:
    """Returns on-demand and spot options for the catalog's available cloud offers with GPUs.

    Args:
        offers: :class:`orchestrator.catalog.offers.Offer` rows.
        gpu: keep offers whose accelerator contains this text (case-insensitive).
    """
    from orchestrator.catalog.offers import Offer

    options: list[CostOption] = []
    for offer in offers:
        assert isinstance(offer, Offer)
        if offer.retired or offer.gpu_count < 1 or offer.provider in ("rented", "owned"):
            continue
        if gpu and gpu.casefold() not in offer.accelerator.casefold():
            continue
        name = f"{offer.provider} {offer.instance_type} ({offer.region})"
        prices = [("on-demand", offer.on_demand_per_hour)]
        if offer.spot_per_hour is not None:
            prices.append(("spot", offer.spot_per_hour))
        for kind, per_hour in prices:
            options.append(CostOption(
                name=name if kind == "on-demand" else f"{name} spot", kind=kind, accelerator=offer.accelerator,
                gpu_count=offer.gpu_count, fixed_per_month=0.0, per_gpu_hour=per_hour / offer.gpu_count,
                capacity_gpu_hours=None, source=f"catalog, as of {offer.as_of.isoformat()}: {offer.source}",
            ))
    return options


def inventory_options(hosts: Iterable[object], *, gpu: str | None = None) -> list[CostOption]:
    """Returns an option per inventory box with GPUs: rented monthly, owned, or hourly as its price says.

    Args:
        hosts: :class:`orchestrator.inventory.InventoryHost` rows.
        gpu: keep boxes whose GPU model contains this text (case-insensitive).
    """
    from orchestrator.inventory import InventoryHost

    options: list[CostOption] = []
    for host in hosts:
        assert isinstance(host, InventoryHost)
        count, model = host.gpu.count, host.gpu.model or ""
        if count < 1 or not model or (gpu and gpu.casefold() not in model.casefold()):
            continue
        price, source = host.price, f"inventory box {host.name}"
        if price.owned is not None:
            options.append(owned_option(host.name, **price.owned.model_dump(), gpu_count=count,
                                        accelerator=model, source=source))
        elif price.per_month is not None:
            options.append(CostOption(host.name, "rented-monthly", model, count, price.per_month, 0.0,
                                      HOURS_PER_MONTH * count, source))
        else:
            assert price.per_hour is not None
            options.append(CostOption(host.name, "hourly", model, count, 0.0, price.per_hour / count,
                                      HOURS_PER_MONTH * count, source))
    return options


@dataclass(frozen=True)
class OptionRow:
    """One option's month at the asked GPU-hours."""

    option: CostOption
    monthly_cost_usd: float
    usd_per_million_images: float | None
    over_capacity: bool  # the hours exceed what one box has in a month
    break_even: BreakEven | None  # against the cheapest owned box at these hours; None for owned options


@dataclass(frozen=True)
class BreakevenReport:
    """Every option priced at one month's GPU-hours, with the throughput the images figures use."""

    gpu_hours_per_month: float
    images_per_sec_per_gpu: float | None  # measured training throughput; None when no run measured it
    throughput_runs: list[str]  # the runs it came from
    rows: list[OptionRow]


def breakeven_report(
    options: Sequence[CostOption], gpu_hours_per_month: float, images_per_sec_per_gpu: float | None,
    throughput_runs: Sequence[str] = (),
) -> BreakevenReport:
    """Prices every option at ``gpu_hours_per_month``, cheapest first, each rental against the cheapest owned box.

    Raises:
        SpecError: the hours are negative or not a number.
    """
    if not gpu_hours_per_month >= 0 or math.isinf(gpu_hours_per_month):
        raise SpecError("gpu-hours-per-month", gpu_hours_per_month, "a number of GPU-hours >= 0")
    owned = [option for option in options if option.owned]
    cheapest_owned = min(owned, key=lambda option: option.monthly_cost(gpu_hours_per_month), default=None)
    rows = [
        OptionRow(
            option=option,
            monthly_cost_usd=option.monthly_cost(gpu_hours_per_month),
            usd_per_million_images=option.usd_per_million_images(gpu_hours_per_month, images_per_sec_per_gpu or 0),
            over_capacity=option.capacity_gpu_hours is not None and gpu_hours_per_month > option.capacity_gpu_hours,
            break_even=None if option.owned or cheapest_owned is None else break_even(cheapest_owned, option),
        )
        for option in options
    ]
    rows.sort(key=lambda row: (row.monthly_cost_usd, row.option.name))
    return BreakevenReport(gpu_hours_per_month, images_per_sec_per_gpu, list(throughput_runs), rows)
