"""Pure: a spec → ranked placements (provider, instance type, region, zone, spot, price, billing rule).

The catalog answers for clouds, the inventory for rented boxes, and the dev box is itself. Everything a user
can get wrong about *where* a run goes is refused here, as one :class:`SpecError` line, before anything is
written: an unknown host, GPU, instance type or region, or a count the provider cannot give. What may still go
but likely will not (a retired offer, an image the GPU may not suit) is planned with a warning for the user.
Reading the catalog or inventory file is the only I/O; nothing is started and nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.catalog.images import AWS_DLAMI, AWS_DLAMI_UNSUPPORTED, AZURE_UBUNTU_HPC, IMAGE_FORMATS
from orchestrator.catalog.offers import Offer, load_offers
from orchestrator.errors import SpecError
from orchestrator.inputs import shown
from orchestrator.inventory.model import Inventory, inventory_path, load_inventory
from orchestrator.machine import Placement

if TYPE_CHECKING:
    from orchestrator.spec import MachineSpec, RunSpec

# Flags that name a machine a provider cannot give, by provider: refused, never silently ignored.
_NOT_FOR = {
    "local": ("hosts", "gpu", "instance_type", "region", "regions", "spot", "max_price", "reclaim", "wait_s",
              "image", "allow_cidr", "environment", "profile"),
    "rented": ("instance_type", "region", "regions", "spot", "max_price", "image", "allow_cidr", "environment",
               "profile"),
}
_CLOUDS_NOT_FOR = ("hosts", "reclaim", "wait_s")  # inventory boxes and their leases are the rented provider's
_NOT_FOR["azure"] = (*_CLOUDS_NOT_FOR, "profile")  # an AWS profile names no Azure account
_FLAG = {"hosts": "--host", "gpu": "--gpu", "instance_type": "--instance-type", "region": "region",
         "regions": "regions", "spot": "--spot", "count": "--count", "max_price": "max_price", "reclaim": "--reclaim",
         "wait_s": "--lease-wait", "image": "--image", "allow_cidr": "--allow-cidr",
         "environment": "machine.environment", "profile": "--profile"}


@dataclass(frozen=True)
class Resolved:
    """The ranked placements for a spec, how many machines each gives, and a line per machine choice."""

    placements: tuple[Placement, ...]
    count: int
    choices: tuple[str, ...]  # for the plan: the boxes or types it would use, with their prices
    image: str | None = None  # clouds: the machine image to boot (an AMI id, or resolve:ssm:<public parameter>)
    warnings: tuple[str, ...] = ()  # for the plan: one line each, what may make the provider refuse or the run fail


MAX_SUCCESSORS = 4  # successors named in a retired offer's warning


def resolve(spec: RunSpec, *, home: Path) -> Resolved:
    """Resolves where a run goes.

    Raises:
        SpecError: the machine part of the spec asks for something the provider cannot give.
    """
    machine = spec.machine
    for name in _NOT_FOR.get(spec.provider, _CLOUDS_NOT_FOR):
        value = getattr(machine, name)
        if value not in (None, False, []):
            given = value.model_dump(exclude_defaults=True) if hasattr(value, "model_dump") else value
            raise SpecError(_FLAG[name], given, f"nothing: the {spec.provider} provider does not use it")
    if spec.provider == "local":
        return _local(machine)
    if spec.provider == "rented":
        return rented_placements(machine, load_inventory(inventory_path(home)))
    if machine.image is not None and spec.provider in IMAGE_FORMATS:  # the forms of the provider asked for only
        pattern, accepted = IMAGE_FORMATS[spec.provider]
        if not re.fullmatch(pattern, machine.image):
            raise SpecError("--image", shown(machine.image), f"{spec.provider}: {accepted}")
    resolved = catalog_placements(spec.provider, machine, load_offers(home=home))
    default = machine.image or {"aws": AWS_DLAMI, "azure": AZURE_UBUNTU_HPC}.get(spec.provider)
    placements = tuple(replace(p, image=machine.image or p.image or default) for p in resolved.placements)
    if any(p.image is None for p in placements):
        raise SpecError("--image", None, f"the machine image to boot on {spec.provider}")
    resolved = replace(resolved, placements=placements, image=placements[0].image)
    old_gpu = sorted({p.instance_type for p in placements if spec.provider == "aws"
                      and p.instance_type.split(".")[0] in AWS_DLAMI_UNSUPPORTED})
    on_dlami = sorted({p.instance_type for p in placements if p.instance_type in old_gpu and p.image == AWS_DLAMI})
    if on_dlami:
        raise SpecError("--image", None, f"an AMI id for {', '.join(on_dlami)}: the current Deep Learning AMIs do "
                        "not support P2 (K80) or P3 (V100) instances; give an image with an older NVIDIA driver "
                        "(--image, or the catalog row's image column)")
    warnings = resolved.warnings
    if old_gpu:
        images = ", ".join(sorted({str(p.image) for p in placements if p.instance_type in old_gpu}))
        warnings += (f"{', '.join(old_gpu)}: the current Deep Learning AMIs do not support P2 (K80) or P3 (V100); "
                     f"{images} must carry an NVIDIA driver and CUDA for that GPU",)
    return replace(resolved, warnings=warnings)


def _local(machine: MachineSpec) -> Resolved:
    count = machine.count or 1
    if count != 1:
        raise SpecError("--count", count, "1: the local provider is this one machine",
                        hint="use --provider rented with several inventory boxes for multi-machine runs")
    price = machine.price_per_hour or 0.0
    placement = Placement(provider="local", instance_type="local", price_per_hour=price)
    return Resolved((placement,), 1, (f"this machine, ${price:g}/h",))


def rented_placements(machine: MachineSpec, inventory: Inventory) -> Resolved:
    """The boxes a rented run may lease: the named ones, those with the GPU model, or any.

    Raises:
        SpecError: a box is named twice or is not in the inventory, no box has the GPU, or the count is more than
            the boxes that match.
    """
    names = list(machine.hosts or [])
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SpecError("--host", repeated[0], "each inventory box once")
    candidates = inventory.select(names=names or None, gpu=machine.gpu)
    if names:
        count = machine.count or len(names)
        if count != len(names):
            raise SpecError("--count", count, f"{len(names)}, the number of --host boxes named (or leave it out)")
    else:
        count = machine.count or 1
        if count > len(candidates):
            which = f"with GPU {machine.gpu}" if machine.gpu else "in all"
            raise SpecError("--count", count, f"at most {len(candidates)}: the inventory has {len(candidates)} "
                            f"box(es) {which}")
    prices = {host.name: machine.price_per_hour if machine.price_per_hour is not None else host.price.usd_per_hour()
              for host in candidates}
    # The plan prices a run at its dearest candidates, so that the estimate is never below the bill.
    dearest = sorted(prices.values(), reverse=True)[:count]
    placement = Placement(
        provider="rented", instance_type=",".join(h.name for h in candidates) if names else f"any {count}",
        price_per_hour=max(dearest) if dearest else 0.0, hosts=tuple(h.name for h in candidates),
        price_fixed=machine.price_per_hour is not None,
    )
    choices = tuple(f"{h.name} ({h.gpu_text}) at {h.user}@{h.host}:{h.port}, ${prices[h.name]:g}/h"
                    for h in candidates)
    if not names and count < len(candidates):
        choices = (f"any {count} of:", *choices)
    return Resolved((placement,), count, choices)


def catalog_placements(provider: str, machine: MachineSpec, offers: Sequence[Offer]) -> Resolved:
    """Ranked cloud placements from the catalog: the instance type (or every type with the GPU), in the allowed
    regions; spot first when asked, then on-demand unless the spec forbids falling back; cheapest first.

    A retired offer is planned only when nothing available matches (the cloud may still launch it), with a
    warning that names its retirement date and its successors; an available offer always wins over a retired one.

    Raises:
        SpecError: no offer matches the provider, type or GPU, and regions.
    """
    ours = [o for o in offers if o.provider == provider]
    if not ours:
        known = sorted({o.provider for o in offers})
        raise SpecError("provider", provider, "a provider with offers in the catalog: " + ", ".join(known))
    available = [o for o in ours if not o.retired]
    if machine.instance_type:
        matching = [o for o in ours if o.instance_type == machine.instance_type]
        if not matching:
            types = sorted({o.instance_type for o in available})
            raise SpecError("--instance-type", machine.instance_type, f"an available {provider} type: "
                            + ", ".join(types))
    elif machine.gpu:
        matching = [o for o in ours if machine.gpu.casefold() in o.accelerator.casefold()]
        if not matching:
            gpus = sorted({o.accelerator for o in available})
            raise SpecError("--gpu", machine.gpu, f"a GPU of the {provider} catalog: " + "; ".join(gpus))
    else:
        raise SpecError("--instance-type", None, f"an instance type or --gpu for {provider}")
    regions = list(machine.regions or ([machine.region] if machine.region else []))
    if regions:
        in_region = [o for o in matching if o.region in regions]
        if not in_region:
            raise SpecError("regions", regions, "regions the catalog lists for it: "
                            + ", ".join(sorted({o.region for o in matching})))
        matching = in_region
    matching, warnings = _prefer_available(matching, available)
    warnings += _previous_generation_warnings(matching)
    ranked: list[Placement] = []
    if machine.spot:
        spot = [o for o in matching if o.spot_per_hour is not None]
        ranked += [_placement(o, spot=True, max_price=machine.max_price) for o in
                   sorted(spot, key=lambda o: (o.spot_per_hour or 0.0, o.region, o.instance_type))]
    if not machine.spot or machine.on_demand_fallback:
        ranked += [_placement(o, spot=False) for o in
                   sorted(matching, key=lambda o: (o.on_demand_per_hour, o.region, o.instance_type))]
    if not ranked:
        raise SpecError("--spot", True, "an offer with a spot price (or allow the on-demand fallback)")
    count = machine.count or 1
    retired_on: dict[tuple[str, str | None], date | None] = {
        (o.instance_type, o.region): o.retired_on for o in matching if o.retired}
    choices = tuple(f"{i}. {p.describe()}" + _retired_marker(retired_on.get((p.instance_type, p.region)))
                    + (f", image {p.image} (catalog)" if p.image and not machine.image else "")
                    for i, p in enumerate(ranked, 1))
    return Resolved(tuple(ranked), count, choices, warnings=warnings)


def _retired_marker(retired_on: date | None) -> str:
    """The dry run's note on a retired placement (Placement.describe does not know the offer's status)."""
    return f" (retired {retired_on.isoformat()})" if retired_on is not None else ""


def _prefer_available(matching: list[Offer], available: Sequence[Offer]) -> tuple[list[Offer], tuple[str, ...]]:
    """Keeps the available offers among those that match; when every match is retired, keeps them all and warns.

    Args:
        matching: the offers that match the type or GPU, and the regions.
        available: every available offer of the provider, where the successors come from.

    Returns:
        The offers to plan, and the warnings of :func:`retirement_warnings` (none when any match is available).
    """
    usable = [o for o in matching if not o.retired]
    if usable:
        return usable, ()
    return matching, retirement_warnings(matching, available)


def retirement_warnings(retired: Sequence[Offer], available: Sequence[Offer]) -> tuple[str, ...]:
    """Lines on retired instance types, one per retirement date: the types, the date, and what to take instead.

    The successors are the provider's available types with a GPU: the same GPU count as a retired type first,
    then cheapest; each type is named once, at its cheapest region's on-demand price, at most
    :data:`MAX_SUCCESSORS` of them.

    Args:
        retired: retired offers of one provider (any types and regions).
        available: the available offers of the same provider.
    """
    earliest: dict[str, date | None] = {}
    for offer in sorted(retired, key=_cheapest_first):
        dates = [o.retired_on for o in retired if o.instance_type == offer.instance_type and o.retired_on]
        earliest.setdefault(offer.instance_type, min(dates) if dates else None)
    provider = retired[0].provider if retired else ""
    cheapest: dict[str, Offer] = {}
    for offer in sorted((o for o in available if o.gpu_count > 0), key=_cheapest_first):
        cheapest.setdefault(offer.instance_type, offer)
    warnings: list[str] = []
    for when in dict.fromkeys(earliest.values()):
        types = [name for name, on in earliest.items() if on == when]
        gpu_counts = {o.gpu_count for o in retired if o.instance_type in types}
        ranked = sorted(cheapest.values(), key=lambda o: (o.gpu_count not in gpu_counts, o.on_demand_per_hour,
                                                          o.instance_type))[:MAX_SUCCESSORS]
        if ranked:
            successors = "successors with a GPU: " + ", ".join(
                f"{o.instance_type} ({o.accelerator}, ${o.on_demand_per_hour:g}/h)" for o in ranked)
        else:
            successors = f"the catalog lists no available {provider} type with a GPU"
        were = "was" if len(types) == 1 else "were"
        it = "it" if len(types) == 1 else "them"
        on = f"on {when.isoformat()}" if when else "(the catalog gives no date)"
        warnings.append(f"{', '.join(types)} {were} retired {on} ({provider}); the provider will likely refuse "
                        f"{it}; {successors}")
    return tuple(warnings)


def _previous_generation_warnings(matching: Sequence[Offer]) -> tuple[str, ...]:
    """A line per type whose catalog row itself calls it previous-generation (its source or terms say so)."""
    marked = [o for o in sorted(matching, key=_cheapest_first)
              if "previous-generation" in f"{o.source} {o.terms}".casefold()]
    return tuple(f"{instance_type} is a previous-generation type (its catalog row says so)"
                 for instance_type in dict.fromkeys(o.instance_type for o in marked))


def _cheapest_first(offer: Offer) -> tuple[float, str, str]:
    return offer.on_demand_per_hour, offer.region, offer.instance_type


def _placement(offer: Offer, *, spot: bool, max_price: float | None = None) -> Placement:
    price = offer.spot_per_hour if spot and offer.spot_per_hour is not None else offer.on_demand_per_hour
    return Placement(
        provider=offer.provider, instance_type=offer.instance_type, region=offer.region, spot=spot,
        max_price=max_price if spot else None, price_per_hour=price, billing_rule=offer.billing_rule,
        image=offer.image or None,
    )
