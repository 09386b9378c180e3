"""Buy versus rent: monthly costs and the break-even hours, worked out by hand."""

from __future__ import annotations

import pytest

from orchestrator.breakeven import CostOption, break_even, breakeven_report, catalog_options, owned_option
from orchestrator.catalog.offers import load_offers
from orchestrator.errors import SpecError


@pytest.fixture
def devbox() -> CostOption:
    # $2,000 over 3 years is $55.56 a month; 350 W at $0.15/kWh is $0.0525 an hour of use.
    return owned_option("devbox", purchase_usd=2000, lifetime_years=3, watts=350, kwh_usd=0.15)


def _hourly(name: str, per_hour: float) -> CostOption:
    return CostOption(name, "on-demand", "V100", 1, 0.0, per_hour, None, "test")


def test_an_owned_box_is_purchase_over_lifetime_months_plus_power(devbox: CostOption) -> None:
    assert devbox.fixed_per_month == pytest.approx(2000 / 36)
    assert devbox.per_gpu_hour == pytest.approx(0.0525)
    assert devbox.monthly_cost(200) == pytest.approx(55.5556 + 10.5, abs=1e-4)
    # ($55.56 / 200 h + $0.0525) per GPU-hour over 100 images/s × 3600 s, per million images.
    assert devbox.usd_per_million_images(200, 100.0) == pytest.approx(0.917438, abs=1e-6)


def test_owning_beats_an_hourly_rental_above_fixed_over_the_hourly_saving(devbox: CostOption) -> None:
    v100 = break_even(devbox, _hourly("p3.2xlarge", 3.06))
    assert v100.owning_wins == "above" and v100.hours == pytest.approx(55.5556 / 3.0075, abs=1e-3)  # 18.47 h
    k80 = break_even(devbox, _hourly("p2.xlarge", 0.90))
    assert k80.hours == pytest.approx(65.553, abs=1e-3)  # 55.5556 / (0.90 - 0.0525)
    assert "above 65.6 GPU-hours/month" in k80.describe()
    assert break_even(devbox, _hourly("power only", 0.05)).owning_wins == "never"


def test_owning_against_a_monthly_rental_wins_below_a_number_of_hours(devbox: CostOption) -> None:
    rented = CostOption("rtx4090", "rented-monthly", "RTX 4090", 1, 350.0, 0.0, 730.0, "test")
    result = break_even(devbox, rented)
    assert result.owning_wins == "below" and result.hours == pytest.approx((350 - 2000 / 36) / 0.0525)  # 5608 h
    cheap_rent = CostOption("cheap", "rented-monthly", "RTX 4090", 1, 40.0, 0.0, 730.0, "test")
    assert break_even(devbox, cheap_rent).owning_wins == "never"


def test_the_report_prices_every_option_cheapest_first_against_the_cheapest_owned(devbox: CostOption) -> None:
    report = breakeven_report([_hourly("p3.2xlarge", 3.06), devbox, _hourly("p2.xlarge", 0.90)], 200, 100.0, ["r-1"])
    assert [row.option.name for row in report.rows] == ["devbox", "p2.xlarge", "p3.2xlarge"]
    assert [round(row.monthly_cost_usd, 2) for row in report.rows] == [66.06, 180.0, 612.0]
    assert report.rows[1].usd_per_million_images == pytest.approx(2.5)  # $0.90 / 360,000 images × 1e6
    assert report.rows[0].break_even is None and report.rows[2].break_even is not None
    over = breakeven_report([devbox], 800, None)
    assert over.rows[0].over_capacity and over.rows[0].usd_per_million_images is None


def test_negative_hours_are_refused(devbox: CostOption) -> None:
    with pytest.raises(SpecError, match="-1"):
        breakeven_report([devbox], -1, None)
    with pytest.raises(SpecError, match="lifetime_years"):
        owned_option("x", purchase_usd=1, lifetime_years=0, watts=0, kwh_usd=0)


def test_catalog_options_are_available_cloud_offers_priced_per_gpu_hour() -> None:
    options = catalog_options(load_offers(), gpu="A100")
    by_name = {option.name: option for option in options}
    assert by_name["aws p4d.24xlarge (us-east-1)"].per_gpu_hour == pytest.approx(32.77 / 8)
    assert all(option.kind in ("on-demand", "spot") and option.fixed_per_month == 0 for option in options)
    everything = {option.name for option in catalog_options(load_offers())}
    assert "aws p2.xlarge (us-east-1)" in everything
    assert "azure Standard_NC6 (eastus)" not in everything  # retired 2023-09-06
    assert not any(name.startswith(("owned ", "rented ")) for name in everything)  # no fixed/variable split
