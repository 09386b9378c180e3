"""Pure: a spec → ranked placements (provider, instance type, region, zone, spot, price, billing rule).

The catalog answers for clouds, the inventory for rented boxes, and the dev box is itself. Everything a user
can get wrong about *where* a run goes is refused here, as one :class:`SpecError` line, before anything is
written: an unknown host, GPU, instance type or region, or a count the provider cannot give. Reading the
catalog or inventory file is the only I/O; nothing is started and nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import SpecError
from orchestrator.machine import Placement

if TYPE_CHECKING:
    from orchestrator.catalog.offers import Offer
    from orchestrator.inventory.model import Inventory
    from orchestrator.spec import MachineSpec, RunSpec

# Flags that name a machine a provider cannot give, by provider: refused, never silently ignored.
_NOT_FOR = {
    "local": ("hosts", "gpu", "instance_type", "region", "regions", "spot", "max_price", "reclaim", "wait_s",
              "image", "allow_cidr"),
    "rented": ("instance_type", "region", "regions", "spot", "max_price", "image", "allow_cidr"),
}
_CLOUDS_NOT_FOR = ("hosts", "reclaim", "wait_s")  # inventory boxes and their leases are the rented provider's
_FLAG = {"hosts": "--host", "gpu": "--gpu", "instance_type": "--instance-type", "region": "region",
         "regions": "regions", "spot": "--spot", "count": "--count", "max_price": "max_price", "reclaim": "--reclaim",
         "wait_s": "--lease-wait", "image": "--image", "allow_cidr": "--allow-cidr"}


@dataclass(frozen=True)
class Resolved:
    """The ranked placements for a spec, how many machines each gives, and a line per machine choice."""

    placements: tuple[Placement, ...]
    count: int
    choices: tuple[str, ...]  # for the plan: the boxes or types it would use, with their prices
    image: str | None = None  # clouds: the machine image to boot (an AMI id, or resolve:ssm:<public parameter>)


# The AWS Deep Learning AMI (NVIDIA driver, Ubuntu 22.04), resolved by EC2 itself from its public SSM parameter at
# launch (FACTS.md; AWS DLAMI developer guide, "find-dlami-id"). Current DLAMIs do not support P2 (K80) or P3 (V100).
AWS_DLAMI = "resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
AWS_DLAMI_UNSUPPORTED = ("p2", "p3")


def resolve(spec: RunSpec, *, home: Path) -> Resolved:
    """Resolves where a run goes.

    Raises:
        SpecError: the machine part of the spec asks for something the provider cannot give.
    """
    machine = spec.machine
    for name in _NOT_FOR.get(spec.provider, _CLOUDS_NOT_FOR):
        value = getattr(machine, name)
        if value not in (None, False, []):
            raise SpecError(_FLAG[name], value, f"nothing: the {spec.provider} provider does not use it")
    if spec.provider == "local":
        return _local(machine)
    if spec.provider == "rented":
        from orchestrator.inventory.model import inventory_path, load_inventory

        return rented_placements(machine, load_inventory(inventory_path(home)))
    from orchestrator.catalog.offers import load_offers

    resolved = catalog_placements(spec.provider, machine, load_offers(home=home))
    if machine.image is not None:
        return replace(resolved, image=machine.image)
    if spec.provider != "aws":
        raise SpecError("--image", None, f"the machine image to boot on {spec.provider}, e.g. --image "
                        "ami-0123456789abcdef0 (a Deep Learning AMI with NVIDIA drivers and Keras)")
    old = sorted({p.instance_type for p in resolved.placements
                  if p.instance_type.split(".")[0] in AWS_DLAMI_UNSUPPORTED})
    if old:
        raise SpecError("--image", None, f"an AMI id for {', '.join(old)}: the current Deep Learning AMIs do not "
                        "support P2 (K80) or P3 (V100) instances; give an image with an older NVIDIA driver")
    return replace(resolved, image=AWS_DLAMI)


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

    Raises:
        SpecError: no available offer matches the provider, type or GPU, and regions.
    """
    available = [o for o in offers if o.provider == provider and not o.retired]
    if not available:
        known = sorted({o.provider for o in offers})
        raise SpecError("provider", provider, "a provider with offers in the catalog: " + ", ".join(known))
    if machine.instance_type:
        matching = [o for o in available if o.instance_type == machine.instance_type]
        if not matching:
            types = sorted({o.instance_type for o in available})
            raise SpecError("--instance-type", machine.instance_type, f"an available {provider} type: "
                            + ", ".join(types))
    elif machine.gpu:
        matching = [o for o in available if machine.gpu.casefold() in o.accelerator.casefold()]
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
    choices = tuple(f"{i}. {p.describe()}" for i, p in enumerate(ranked, 1))
    return Resolved(tuple(ranked), count, choices)


def _placement(offer: Offer, *, spot: bool, max_price: float | None = None) -> Placement:
    price = offer.spot_per_hour if spot and offer.spot_per_hour is not None else offer.on_demand_per_hour
    return Placement(
        provider=offer.provider, instance_type=offer.instance_type, region=offer.region, spot=spot,
        max_price=max_price if spot else None, price_per_hour=price, billing_rule=offer.billing_rule,
    )
