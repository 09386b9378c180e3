"""Billing rules and the pricing of a run, split into setup, compute and teardown.

A rule turns seconds used into seconds billed. The rule for each provider comes from the offer; rules
stated by the providers themselves are cited where they are defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

from orchestrator.errors import SpecError


@dataclass(frozen=True)
class BillingRule:
    """How seconds used become seconds billed."""

    name: str
    increment_s: float  # billing granularity: 1 for per-second, 60 for per-minute, 3600 for hourly
    minimum_s: float  # the least a launch is billed
    round_up: bool = True  # True: a started increment is billed; False: only full increments are
    source: str = ""

    def billed_seconds(self, used_s: float) -> float:
        """Returns the seconds billed for ``used_s`` seconds of use (0 for no use)."""
        if used_s <= 0:
            return 0.0
        increments = used_s / self.increment_s
        whole = math.ceil(increments - 1e-9) if self.round_up else math.floor(increments + 1e-9)
        return max(self.minimum_s, whole * self.increment_s)


BILLING_RULES: dict[str, BillingRule] = {
    "per_second": BillingRule("per_second", 1.0, 0.0, source="local box: time used, no minimum"),
    "aws_linux": BillingRule(
        "aws_linux", 1.0, 60.0, source="AWS What's New 2017-10-02: per-second billing, 60 s minimum (Linux)"
    ),
    "per_minute_full": BillingRule(
        "per_minute_full", 60.0, 0.0, round_up=False,
        source="Azure pricing FAQ: VMs billed per full minute (6 min 45 s bills 6 min)",
    ),
    "hourly": BillingRule("hourly", 3600.0, 3600.0, source="a started hour is billed whole"),
}


def billing_rule(name: str) -> BillingRule:
    """Returns a billing rule by name.

    Raises:
        SpecError: the rule is unknown.
    """
    if name not in BILLING_RULES:
        raise SpecError("billing_rule", name, "one of " + ", ".join(sorted(BILLING_RULES)))
    return BILLING_RULES[name]


@dataclass(frozen=True)
class CostLine:
    """One component of one machine's cost, as priced and as the store keeps it."""

    component: str  # setup, compute or teardown
    seconds: float  # used
    billed_seconds: float  # under the rule: its minimum and rounding applied
    price_per_hour: float
    amount_usd: float
    rule: str  # the billing rule's name (BILLING_RULES)
    machine_id: str = ""  # the machine billed; "" before it is known (price_run), or in a store older than version 5


def price_run(
    *, setup_s: float, compute_s: float, teardown_s: float, price_per_hour: float, rule: BillingRule
) -> list[CostLine]:
    """Prices one machine's time, split into setup (launch to payload start), compute and teardown.

    The rule applies to the whole billed span; the billed seconds beyond use (minimum, rounding) are added
    to teardown, where the machine is idle.
    """
    parts = {"setup": max(0.0, setup_s), "compute": max(0.0, compute_s), "teardown": max(0.0, teardown_s)}
    extra = rule.billed_seconds(sum(parts.values())) - sum(parts.values())
    billed = dict(parts)
    if extra >= 0:
        billed["teardown"] += extra
    else:
        # Whole-increment rules bill less than used: take the difference off the end.
        remaining = -extra
        for name in ("teardown", "compute", "setup"):
            cut = min(billed[name], remaining)
            billed[name] = round(billed[name] - cut, 6)  # to the microsecond: no 1e-15 s left of a part cut away
            remaining -= cut
    return [
        CostLine(name, parts[name], billed[name], price_per_hour, billed[name] / 3600.0 * price_per_hour, rule.name)
        for name in ("setup", "compute", "teardown")
    ]


def price_machine(
    machine_id: str,
    *,
    launched_at: datetime,
    gone_at: datetime,
    execute_start: datetime | None,
    execute_end: datetime | None,
    price_per_hour: float,
    rule: BillingRule,
) -> list[CostLine]:
    """Prices one machine from its launch to its termination (or now, while it is still up), as its cost lines.

    The machine was idle in setup until the payload started, computing while it ran, and idle again until it went
    away. A machine of a failed launch attempt never ran the payload: all its time is setup.
    """
    start = execute_start if execute_start is not None and execute_start > launched_at else launched_at
    start = min(start, gone_at) if execute_start is not None else gone_at
    end = min(max(execute_end or gone_at, start), gone_at) if execute_start is not None else gone_at
    lines = price_run(
        setup_s=(start - launched_at).total_seconds(),
        compute_s=(end - start).total_seconds(),
        teardown_s=(gone_at - end).total_seconds(),
        price_per_hour=price_per_hour,
        rule=rule,
    )
    return [replace(line, machine_id=machine_id) for line in lines]


HOURS_PER_MONTH = 730.0  # 8,760 h / 12


def monthly_rental_per_hour(per_month_usd: float, utilisation: float) -> float:
    """Returns the effective hourly price of a box rented by the month and used ``utilisation`` of the time.

    Raises:
        SpecError: utilisation is not in (0, 1].
    """
    if not 0 < utilisation <= 1:
        raise SpecError("price.utilisation", utilisation, "a fraction of the month in (0, 1]")
    return per_month_usd / (HOURS_PER_MONTH * utilisation)


def owned_per_hour(*, purchase_usd: float, lifetime_years: float, watts: float, kwh_usd: float) -> float:
    """Returns an owned box's cost per hour of use: purchase spread over its life, plus the power it draws.

    The purchase is spread over every hour of its lifetime (it loses value whether used or not); power is
    paid only while it runs.
    """
    if lifetime_years <= 0:
        raise SpecError("price.owned.lifetime_years", lifetime_years, "a number of years greater than 0")
    return purchase_usd / (lifetime_years * 8760.0) + watts / 1000.0 * kwh_usd
