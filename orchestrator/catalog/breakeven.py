"""Buy versus rent: each option's monthly cost at a number of GPU-hours, and where owning starts to win.

Every option's month is a straight line in GPU-hours H: ``fixed_per_month + per_gpu_hour × H``.

- Cloud on-demand and spot (catalog offers): no fixed part; the offer's price per GPU-hour.
- Rented by the month (catalog ``rented`` rows, inventory ``price: {per_month: …}``): the rent is fixed.
- Owned box (catalog ``owned`` rows, inventory ``price: {owned: …}``, or the command line): the purchase over the
  months of its life is fixed (it loses value used or not); the power it draws is paid per hour of use.
- A box priced per hour (inventory ``price: {per_hour: …}``): per GPU-hour, no fixed part.

Dollars per million images need each option's own images/s per GPU (:func:`assign_throughput`): measured by a
run on that GPU; else scaled from a run on another GPU by the published ResNet-50 ratio of the two GPUs; and
when no run measured a GPU at all, the published ResNet-50 training figure itself. A GPU with none of these has
no figure, rather than a borrowed one.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.catalog.offers import Offer
from orchestrator.cost import HOURS_PER_MONTH
from orchestrator.errors import SpecError
from orchestrator.inventory.model import InventoryHost

if TYPE_CHECKING:
    import pandas as pd

# A GPU model inside a name: "K80 (one GK210)" → K80, "NVIDIA GeForce RTX 4090" → RTX 4090, "Tesla V100-SXM2" → V100.
_GPU_MODEL = re.compile(r"\bRTX\s*[A-Z]?\d{3,4}\b|\b[A-Z]{1,2}\d{1,4}[A-Z]?\b")
_MIXED = ("amp", "fp16", "mixed", "bf16", "bfloat16")


def gpu_family(name: str | None) -> str | None:
    """Returns the GPU model a name contains (memory size and form factor dropped), or None for no GPU."""
    if not name:
        return None
    match = _GPU_MODEL.search(name.upper())
    return re.sub(r"\s+", " ", match.group(0)) if match else None


def precision_class(precision: str | None) -> str:
    """Returns ``mixed`` for mixed or half precision (AMP, fp16, mixed_bfloat16…), else ``fp32`` (TF32 included)."""
    text = (precision or "").casefold()
    return "mixed" if any(word in text for word in _MIXED) else "fp32"


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
    """Where an owned box and another option cost the same per month: in GPU-hours, and in images when both
    options have a throughput figure (the like-for-like answer when their GPUs differ)."""

    owned: str  # the owned option's name
    other: str  # the option it is compared with
    hours: float | None  # GPU-hours per month at which the two cost the same; None when they never do
    owning_wins: str  # "above" or "below" ``hours``, or "always" or "never"
    # The same for a month's work: millions of images each option trains at its own throughput; None without
    # a throughput figure for both.
    million_images: float | None = None
    owning_wins_images: str | None = None

    def describe(self) -> str:
        """Returns one line a user reads, e.g. ``owning beats … above 18.5 GPU-hours/month``."""
        if self.owning_wins in ("always", "never"):
            text = f"owning {self.owned} beats {self.other}: {self.owning_wins}"
        else:
            assert self.hours is not None
            text = f"owning {self.owned} beats {self.other} {self.owning_wins} {self.hours:.1f} GPU-hours/month"
        if self.owning_wins_images in ("always", "never"):
            text += f"; for the same images: {self.owning_wins_images}"
        elif self.owning_wins_images is not None and self.million_images is not None:
            text += f"; for the same images: {self.owning_wins_images} {self.million_images:,.1f}M images/month"
        return text


def _crossing(fixed_gap: float, unit_gap: float, capacity: float | None) -> tuple[float | None, str]:
    """Solves ``fixed_gap == unit_gap × x`` for the use x where owning starts or stops winning.

    ``fixed_gap``: what owning costs more each month whatever the use; ``unit_gap``: what each unit of use
    saves by owning; ``capacity``: the most use the other option has in a month (None: unbounded).
    """
    if unit_gap == 0:
        return None, "always" if fixed_gap < 0 else "never"
    x = fixed_gap / unit_gap
    if unit_gap > 0:
        return (x, "above") if x > 0 else (None, "always")
    if x <= 0:
        return None, "never"
    if capacity is not None and x >= capacity:
        # Past what the rented box has in a month: owning wins at every use the rental can give.
        return None, "always"
    return x, "below"


def break_even(
    owned: CostOption, other: CostOption, owned_images_per_sec: float | None = None,
    other_images_per_sec: float | None = None,
) -> BreakEven:
    """Solves ``owned.monthly_cost(H) == other.monthly_cost(H)`` for H, and, with both throughputs (images/s
    per GPU), the same for a month's images, each option using the GPU-hours it needs for them.

    With the owned box dearer up front and cheaper per hour (the usual case against an hourly rental),
    owning wins above ``(owned fixed − other fixed) / (other per hour − owned per hour)``; per image, the
    per-hour prices are divided by each option's images per GPU-hour.
    """
    fixed_gap = owned.fixed_per_month - other.fixed_per_month
    hours, wins = _crossing(fixed_gap, other.per_gpu_hour - owned.per_gpu_hour, other.capacity_gpu_hours)
    if not owned_images_per_sec or not other_images_per_sec:
        return BreakEven(owned.name, other.name, hours, wins)
    owned_rate, other_rate = owned_images_per_sec * 3600 / 1e6, other_images_per_sec * 3600 / 1e6  # M img/GPU-h
    capacity = None if other.capacity_gpu_hours is None else other.capacity_gpu_hours * other_rate
    images, images_wins = _crossing(fixed_gap, other.per_gpu_hour / other_rate - owned.per_gpu_hour / owned_rate,
                                    capacity)
    return BreakEven(owned.name, other.name, hours, wins, images, images_wins)


def owned_option(
    name: str, *, purchase_usd: float, lifetime_years: float, watts: float, kwh_usd: float, gpu_count: int = 1,
    accelerator: str = "", source: str = "",
) -> CostOption:
    """Returns an owned box as an option: purchase / lifetime months fixed, power per GPU-hour.

    Raises:
        SpecError: a negative figure, a lifetime of 0 years or less, or no GPUs.
    """
    for label, value in (("purchase_usd", purchase_usd), ("watts", watts), ("kwh_usd", kwh_usd)):
        if value < 0 or math.isnan(value):
            raise SpecError(label, value, "a number >= 0")
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
    """Returns the catalog's available offers with GPUs as options.

    Cloud rows give an on-demand option and, where the row has a spot price, a spot option; ``rented`` rows a
    monthly rental (their rent from ``terms``); ``owned`` rows an owned box (purchase, lifetime and power from
    ``terms``).

    Args:
        offers: :class:`orchestrator.catalog.offers.Offer` rows.
        gpu: keep offers whose accelerator contains this text (case-insensitive).
    """
    options: list[CostOption] = []
    for offer in offers:
        assert isinstance(offer, Offer)
        if offer.retired or offer.gpu_count < 1:
            continue
        if gpu and gpu.casefold() not in offer.accelerator.casefold():
            continue
        source = f"catalog, as of {offer.as_of.isoformat()}: {offer.source}"
        terms = offer.term_values
        if offer.provider == "owned":
            options.append(owned_option(
                f"owned {offer.instance_type}", purchase_usd=terms["purchase_usd"],
                lifetime_years=terms["lifetime_years"], watts=terms["watts"], kwh_usd=terms["kwh_usd"],
                gpu_count=offer.gpu_count, accelerator=offer.accelerator, source=source))
            continue
        if offer.provider == "rented":
            options.append(CostOption(
                f"rented {offer.instance_type}", "rented-monthly", offer.accelerator, offer.gpu_count,
                terms["per_month_usd"], 0.0, HOURS_PER_MONTH * offer.gpu_count, source))
            continue
        name = f"{offer.provider} {offer.instance_type} ({offer.region})"
        prices = [("on-demand", offer.on_demand_per_hour)]
        if offer.spot_per_hour is not None:
            prices.append(("spot", offer.spot_per_hour))
        for kind, per_hour in prices:
            options.append(CostOption(
                name=name if kind == "on-demand" else f"{name} spot", kind=kind, accelerator=offer.accelerator,
                gpu_count=offer.gpu_count, fixed_per_month=0.0, per_gpu_hour=per_hour / offer.gpu_count,
                capacity_gpu_hours=None, source=source,
            ))
    return options


def inventory_options(hosts: Iterable[object], *, gpu: str | None = None) -> list[CostOption]:
    """Returns an option per inventory box with GPUs: rented monthly, owned, or hourly as its price says.

    Args:
        hosts: :class:`orchestrator.inventory.InventoryHost` rows.
        gpu: keep boxes whose GPU model contains this text (case-insensitive).
    """
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
class Measured:
    """A run's training throughput per GPU, and the GPU it ran on."""

    run_id: str
    gpu: str | None  # the GPU model the run's machine reported; None for a machine without one
    images_per_sec_per_gpu: float
    precision: str | None = None  # the run's precision (float32, mixed_float16…), when it says


@dataclass(frozen=True)
class Throughput:
    """The images/s per GPU an option's dollars per million images use, and where the figure comes from."""

    images_per_sec_per_gpu: float
    basis: str  # measured, scaled or published
    detail: str  # which runs or published rows, e.g. "r-1 on V100 × 909/412 (ref-09 / ref-05)"


@dataclass(frozen=True)
class Reference:
    """The published ResNet-50 training figure per GPU of one GPU model and precision class."""

    images_per_sec_per_gpu: float  # the median of the rows
    ids: list[str]


def reference_figures(references: pd.DataFrame) -> dict[tuple[str, str], Reference]:
    """Returns (GPU model, precision class) → the median published one-GPU training images/s and its rows.

    Args:
        references: :func:`orchestrator.report.references.load_references` rows.
    """
    figures: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for row in references.to_dict("records"):
        value = row.get("train_images_per_sec")
        family = gpu_family(str(row.get("gpu") or ""))
        if family is None or int(row.get("gpus") or 1) != 1 or not isinstance(value, float | int) \
                or math.isnan(value):
            continue
        figures.setdefault((family, precision_class(str(row.get("precision")))), []).append(
            (str(row["run_id"]), float(value)))
    return {key: Reference(statistics.median(v for _, v in rows), [i for i, _ in rows])
            for key, rows in figures.items()}


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def assign_throughput(
    options: Sequence[CostOption], measured: Sequence[Measured], references: dict[tuple[str, str], Reference]
) -> tuple[dict[str, Throughput], str]:
    """Returns each option's throughput (by option name; options without a figure are absent) and one line
    saying what workload the figures are.

    An option's GPU measured by a run: that run's figure (the best of several). Else, for a run on a GPU with a
    published figure, the run's figure × published(option's GPU) / published(run's GPU), same precision class.
    When no run measured a GPU, the published ResNet-50 fp32 training figure. See the module's docstring.
    """
    on_gpu = sorted((m for m in measured if gpu_family(m.gpu)), key=lambda m: -m.images_per_sec_per_gpu)
    result: dict[str, Throughput] = {}
    if on_gpu:
        runs = ", ".join(dict.fromkeys(f"{m.run_id} on {gpu_family(m.gpu)}" for m in on_gpu))
        workload = (f"images/s per GPU: the model of runs {runs}; other GPUs scaled by published ResNet-50 "
                    "training ratios")
        for option in options:
            family = gpu_family(option.accelerator)
            same = [m for m in on_gpu if gpu_family(m.gpu) == family]
            if same:
                result[option.name] = Throughput(same[0].images_per_sec_per_gpu, "measured", f"run {same[0].run_id}")
                continue
            for run in on_gpu:
                klass = precision_class(run.precision)
                mine = references.get((str(gpu_family(run.gpu)), klass))
                theirs = references.get((str(family), klass))
                if family is None or mine is None or theirs is None:
                    continue
                ratio = theirs.images_per_sec_per_gpu / mine.images_per_sec_per_gpu
                result[option.name] = Throughput(
                    run.images_per_sec_per_gpu * ratio, "scaled",
                    f"run {run.run_id} on {gpu_family(run.gpu)} × {_figure(theirs.images_per_sec_per_gpu)}/"
                    f"{_figure(mine.images_per_sec_per_gpu)} ({klass}: {'+'.join(theirs.ids)} / {'+'.join(mine.ids)})",
                )
                break
        return result, workload
    cpu_runs = ", ".join(dict.fromkeys(m.run_id for m in measured))
    workload = ("images/s per GPU: published ResNet-50 fp32 training figures (no run measured a GPU"
                + (f"; runs {cpu_runs} ran without one)" if cpu_runs else ")"))
    for option in options:
        reference = references.get((str(gpu_family(option.accelerator)), "fp32"))
        if reference is not None:
            result[option.name] = Throughput(reference.images_per_sec_per_gpu, "published",
                                             "ResNet-50 " + "+".join(reference.ids))
    return result, workload


@dataclass(frozen=True)
class OptionRow:
    """One option's month at the asked GPU-hours."""

    option: CostOption
    monthly_cost_usd: float
    throughput: Throughput | None  # the images/s per GPU its images figure uses; None: no figure for its GPU
    usd_per_million_images: float | None
    over_capacity: bool  # the hours exceed what one box has in a month
    break_even: BreakEven | None  # against the cheapest owned box at these hours; None for owned options


@dataclass(frozen=True)
class BreakevenReport:
    """Every option priced at one month's GPU-hours, with the throughput the images figures use."""

    gpu_hours_per_month: float
    workload: str  # what the images/s figures are (see assign_throughput)
    measured: list[Measured] = field(default_factory=list)  # the runs' figures it was given
    rows: list[OptionRow] = field(default_factory=list)


def breakeven_report(
    options: Sequence[CostOption], gpu_hours_per_month: float, measured: Sequence[Measured] = (),
    references: dict[tuple[str, str], Reference] | None = None,
) -> BreakevenReport:
    """Prices every option at ``gpu_hours_per_month``, cheapest first, each rental against the cheapest owned box.

    Args:
        options: the options to price.
        gpu_hours_per_month: GPU-hours of use in the month.
        measured: runs' training throughput per GPU.
        references: published figures by (GPU model, precision class), from :func:`reference_figures`.

    Raises:
        SpecError: the hours are negative or not a number.
    """
    if not gpu_hours_per_month >= 0 or math.isinf(gpu_hours_per_month):
        raise SpecError("gpu-hours-per-month", gpu_hours_per_month, "a number of GPU-hours >= 0")
    throughput, workload = assign_throughput(options, measured, references or {})
    owned = [option for option in options if option.owned]
    cheapest_owned = min(owned, key=lambda option: option.monthly_cost(gpu_hours_per_month), default=None)
    rows = []
    for option in options:
        figure = throughput.get(option.name)
        rows.append(OptionRow(
            option=option,
            monthly_cost_usd=option.monthly_cost(gpu_hours_per_month),
            throughput=figure,
            usd_per_million_images=None if figure is None else option.usd_per_million_images(
                gpu_hours_per_month, figure.images_per_sec_per_gpu),
            over_capacity=option.capacity_gpu_hours is not None and gpu_hours_per_month > option.capacity_gpu_hours,
            break_even=None if option.owned or cheapest_owned is None else break_even(
                cheapest_owned, option, _rate(throughput.get(cheapest_owned.name)), _rate(figure)),
        ))
    rows.sort(key=lambda row: (row.monthly_cost_usd, row.option.name))
    return BreakevenReport(gpu_hours_per_month, workload, list(measured), rows)


def _rate(figure: Throughput | None) -> float | None:
    return None if figure is None else figure.images_per_sec_per_gpu
