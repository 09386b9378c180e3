from __future__ import annotations

import pytest

from orchestrator.cost import BILLING_RULES, billing_rule, price_run
from orchestrator.errors import SpecError


@pytest.mark.parametrize(
    ("rule", "used", "billed"),
    [
        ("aws_linux", 59, 60),
        ("aws_linux", 61, 61),
        ("aws_linux", 60.4, 61),
        ("per_minute_full", 405, 360),  # 6 min 45 s bills 6 min
        ("per_second", 0.5, 1),
        ("per_second", 0, 0),
        ("hourly", 3601, 7200),
    ],
)
def test_billing_rules_turn_used_seconds_into_billed_seconds(rule: str, used: float, billed: float) -> None:
    assert BILLING_RULES[rule].billed_seconds(used) == billed


def test_a_run_is_split_into_setup_compute_and_teardown_and_the_minimum_lands_on_teardown() -> None:
    lines = price_run(setup_s=10, compute_s=20, teardown_s=5, price_per_hour=3.6, rule=billing_rule("aws_linux"))
    by_part = {line.component: line for line in lines}
    assert by_part["setup"].billed_seconds == 10
    assert by_part["compute"].billed_seconds == 20
    assert by_part["teardown"].billed_seconds == 30  # 35 s used, 60 s billed
    assert sum(line.amount_usd for line in lines) == pytest.approx(0.06)


def test_an_unknown_rule_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="billing_rule"):
        billing_rule("per_fortnight")


def test_a_monthly_rental_and_an_owned_box_are_priced_per_hour() -> None:
    from orchestrator.cost import monthly_rental_per_hour, owned_per_hour

    assert monthly_rental_per_hour(730.0, 1.0) == pytest.approx(1.0)
    assert monthly_rental_per_hour(730.0, 0.25) == pytest.approx(4.0)  # used a quarter of the time
    # 2,628 USD over 3 years is 0.1 USD/h; 500 W at 0.30 USD/kWh is 0.15 USD/h.
    assert owned_per_hour(purchase_usd=2628, lifetime_years=3, watts=500, kwh_usd=0.30) == pytest.approx(0.25)
    with pytest.raises(SpecError, match="utilisation"):
        monthly_rental_per_hour(100, 0)
