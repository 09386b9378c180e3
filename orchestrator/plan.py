"""The plan: a spec resolved into suite params, ranked placements, and an estimate of duration and cost.

Making a plan has no side effects: it reads the suite, the catalog and the inventory, and nothing else. The
payload's own check of the params (a subprocess, ``remote.payload.check_params``) is a separate step that
``api.plan`` (``orchestrate run`` and ``--dry-run``) takes after the plan is made, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.catalog.placement import resolve
from orchestrator.clouds.azure import launch_needs
from orchestrator.cost import billing_rule
from orchestrator.machine import Placement
from orchestrator.spec import ParamValue, RunSpec, SuiteSpec, load_suite, resolve_params

STEPS = ("plan", "provision", "connect", "prepare", "push", "execute", "collect", "teardown", "price", "record")
# Seconds a provider needs before the payload starts, for the plan's estimate.
SETUP_ESTIMATE_S = {"local": 2.0, "rented": 20.0}


@dataclass(frozen=True)
class Plan:
    """What a run will do, resolved from the spec."""

    spec: RunSpec
    suite: SuiteSpec
    params: dict[str, ParamValue]
    placements: tuple[Placement, ...]  # tried in order; the next after a capacity or quota error
    count: int  # machines per placement
    choices: tuple[str, ...]  # one line per box or type it would use, with its price (for the dry run)
    image: str | None = None  # clouds: the machine image the placements boot
    steps: tuple[str, ...] = STEPS
    estimated_duration_s: float = 0.0
    estimated_cost_usd: float = 0.0
    warnings: tuple[str, ...] = ()  # one line each: a retired offer and its successors, an image the GPU may not suit

    @property
    def attempts(self) -> tuple[Placement, ...]:
        """The placements the run may try (at most ``max_attempts``)."""
        return self.placements[: self.spec.machine.max_attempts]


def make_plan(spec: RunSpec, *, home: Path) -> Plan:
    """Resolves a spec into a plan: suite params, ranked placements, estimated duration and cost, and warnings
    (among them what a launch will need that is not set, such as an Azure subscription).

    Raises:
        SpecError: the suite, its params (by type), the machines asked for, or a cloud setting are invalid.
    """
    suite = load_suite(spec.suite)
    params = resolve_params(suite, spec.params)
    resolved = resolve(spec, home=home)
    first = resolved.placements[0]
    duration = SETUP_ESTIMATE_S.get(spec.provider, 120.0) + suite.estimated_duration_s
    billed_hours = billing_rule(first.billing_rule).billed_seconds(duration) / 3600.0
    cost = billed_hours * first.price_per_hour * resolved.count
    return Plan(spec, suite, params, resolved.placements, resolved.count, resolved.choices, image=resolved.image,
                estimated_duration_s=duration, estimated_cost_usd=cost,
                warnings=resolved.warnings + _launch_needs(spec.provider, home))


def _launch_needs(provider: str, home: Path) -> tuple[str, ...]:
    """What a launch will need that a plan does not (an Azure subscription left unset), one line each: a dry run
    creates nothing and needs no account, so it is said here, and refused only when a run would launch.

    Raises:
        SpecError: a cloud setting is set to something that is not one.
    """
    if provider != "azure":
        return ()
    needed = launch_needs(home)
    return (needed,) if needed else ()
