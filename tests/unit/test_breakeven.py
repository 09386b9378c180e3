"""Buy versus rent: monthly costs and the break-even hours, worked out by hand."""

from __future__ import annotations

import pytest

from orchestrator.catalog.breakeven import (
    CostOption,
    Measured,
    Reference,
    assign_throughput,
    break_even,
    breakeven_report,
    catalog_options,
    gpu_family,
    owned_option,
    precision_class,
    reference_figures,
)
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


def test_for_the_same_images_each_option_uses_the_gpu_hours_its_own_throughput_needs(devbox: CostOption) -> None:
    # The devbox trains 100 images/s (0.36M per GPU-hour), the V100 400 (1.44M): per million images the cloud costs
    # $3.06 / 1.44 = $2.125 and the devbox $0.0525 / 0.36 = $0.1458, so its $55.56 a month is paid back by
    # 55.5556 / 1.9792 = 28.07M images a month (78 devbox hours), not by the 18.5 GPU-hours of equal hours.
    result = break_even(devbox, _hourly("p3.2xlarge", 3.06), 100.0, 400.0)
    assert (result.owning_wins, result.hours) == ("above", pytest.approx(18.472, abs=1e-3))
    assert result.owning_wins_images == "above" and result.million_images == pytest.approx(28.070, abs=1e-3)
    assert "for the same images: above 28.1M images/month" in result.describe()
    # A faster owned box than the cloud GPU: owning wins sooner per image than per hour.
    faster = break_even(devbox, _hourly("p2.xlarge", 0.90), 400.0, 50.0)
    assert faster.million_images == pytest.approx(55.5556 / (0.90 / 0.18 - 0.0525 / 1.44), abs=1e-3)
    assert break_even(devbox, _hourly("p2.xlarge", 0.90), None, 50.0).million_images is None


def test_owning_against_a_monthly_rental_wins_below_a_number_of_hours(devbox: CostOption) -> None:
    rented = CostOption("rtx4090", "rented-monthly", "RTX 4090", 1, 350.0, 0.0, 7300.0, "test")
    result = break_even(devbox, rented)
    assert result.owning_wins == "below" and result.hours == pytest.approx((350 - 2000 / 36) / 0.0525)  # 5608 h
    dear_rent = CostOption("dear", "rented-monthly", "RTX 4090", 1, 500.0, 0.0, 730.0, "test")
    assert break_even(devbox, dear_rent).owning_wins == "always"  # 8,466 h is past the rental's 730 h a month
    cheap_rent = CostOption("cheap", "rented-monthly", "RTX 4090", 1, 40.0, 0.0, 730.0, "test")
    assert break_even(devbox, cheap_rent).owning_wins == "never"


def test_the_report_prices_every_option_cheapest_first_against_the_cheapest_owned(devbox: CostOption) -> None:
    devbox = owned_option("devbox", purchase_usd=2000, lifetime_years=3, watts=350, kwh_usd=0.15, accelerator="V100")
    report = breakeven_report([_hourly("p3.2xlarge", 3.06), devbox, _hourly("p2.xlarge", 0.90)], 200,
                              [Measured("r-1", "Tesla V100-SXM2-16GB", 100.0)])
    assert [row.option.name for row in report.rows] == ["devbox", "p2.xlarge", "p3.2xlarge"]
    assert [round(row.monthly_cost_usd, 2) for row in report.rows] == [66.06, 180.0, 612.0]
    assert report.rows[1].usd_per_million_images == pytest.approx(2.5)  # $0.90 / 360,000 images × 1e6
    assert report.rows[0].break_even is None and report.rows[2].break_even is not None
    assert report.rows[1].throughput is not None and report.rows[1].throughput.basis == "measured"
    over = breakeven_report([devbox], 800)
    assert over.rows[0].over_capacity and over.rows[0].usd_per_million_images is None


def test_negative_hours_are_refused(devbox: CostOption) -> None:
    with pytest.raises(SpecError, match="-1"):
        breakeven_report([devbox], -1)
    with pytest.raises(SpecError, match="lifetime_years"):
        owned_option("x", purchase_usd=1, lifetime_years=0, watts=0, kwh_usd=0)


def test_catalog_options_are_cloud_offers_per_gpu_hour_and_the_rented_and_owned_rows_with_their_terms() -> None:
    options = catalog_options(load_offers(), gpu="A100")
    by_name = {option.name: option for option in options}
    assert by_name["aws p4d.24xlarge (us-east-1)"].per_gpu_hour == pytest.approx(32.77 / 8)
    assert all(option.kind in ("on-demand", "spot") and option.fixed_per_month == 0 for option in options)
    everything = {option.name: option for option in catalog_options(load_offers())}
    assert "aws p2.xlarge (us-east-1)" in everything
    assert "azure Standard_NC6 (eastus)" not in everything  # retired 2023-09-06
    assert everything["aws p3.2xlarge (us-east-1) spot"].per_gpu_hour == pytest.approx(0.918)
    # The shipped rented row: $350 a month whatever the use; the owned one: $2,000 over 36 months + 350 W.
    rented = everything["rented example-rtx4090-monthly"]
    assert (rented.kind, rented.fixed_per_month, rented.per_gpu_hour) == ("rented-monthly", 350.0, 0.0)
    owned = everything["owned example-rtx3090-devbox"]
    assert owned.owned and owned.fixed_per_month == pytest.approx(2000 / 36)
    assert owned.per_gpu_hour == pytest.approx(0.0525)


@pytest.mark.parametrize(("name", "family"), [
    ("K80 (one GK210)", "K80"), ("Tesla V100-SXM2-16GB", "V100"), ("NVIDIA A100-SXM4-80GB", "A100"),
    ("H100 80GB SXM5", "H100"), ("NVIDIA GeForce RTX 4090", "RTX 4090"), ("Tesla T4", "T4"), ("A10G", "A10G"),
    ("", None), (None, None), ("AMD EPYC", None),
])
def test_gpu_family_reads_the_model_out_of_a_name(name: str | None, family: str | None) -> None:
    assert gpu_family(name) == family


def test_precision_classes() -> None:
    assert [precision_class(p) for p in ("fp32", "TF32+XLA", "float32", None, "AMP+XLA", "fp16", "mixed_bfloat16")] \
        == ["fp32", "fp32", "fp32", "fp32", "mixed", "mixed", "mixed"]


REFERENCES = {("K80", "fp32"): Reference(50.0, ["ref-a"]), ("V100", "fp32"): Reference(400.0, ["ref-b"]),
              ("V100", "mixed"): Reference(1200.0, ["ref-c"])}


def _option(name: str, gpu: str) -> CostOption:
    return CostOption(name, "on-demand", gpu, 1, 0.0, 1.0, None, "test")


def test_each_option_gets_its_own_gpus_figure_measured_then_scaled_by_published_ratios() -> None:
    options = [_option("k80", "K80 (one GK210)"), _option("v100", "V100 16GB"), _option("a10g", "A10G")]
    figures, workload = assign_throughput(options, [Measured("r-k80", "Tesla K80", 30.0, "float32")], REFERENCES)
    assert (figures["k80"].basis, figures["k80"].images_per_sec_per_gpu) == ("measured", 30.0)
    # 30 images/s on a K80 × 400/50 (the published V100/K80 fp32 ratio) = 240 on a V100.
    assert (figures["v100"].basis, figures["v100"].images_per_sec_per_gpu) == ("scaled", 240.0)
    assert "ref-b" in figures["v100"].detail and "ref-a" in figures["v100"].detail
    assert "a10g" not in figures  # no published A10G figure: no number rather than a borrowed one
    assert "r-k80 on K80" in workload
    mixed, _ = assign_throughput(options, [Measured("r-v", "V100", 900.0, "mixed_float16")], REFERENCES)
    assert mixed["v100"].basis == "measured" and "k80" not in mixed  # no published mixed-precision K80 figure


def test_without_a_gpu_run_the_published_figures_are_used_and_a_cpu_figure_is_never_borrowed() -> None:
    options = [_option("k80", "K80"), _option("v100", "V100"), _option("4090", "RTX 4090")]
    figures, workload = assign_throughput(options, [Measured("r-cpu", None, 12000.0)], REFERENCES)
    assert {name: (t.basis, t.images_per_sec_per_gpu) for name, t in figures.items()} == {
        "k80": ("published", 50.0), "v100": ("published", 400.0)}
    assert "no run measured a GPU" in workload and "r-cpu" in workload


def test_the_shipped_references_give_one_median_figure_per_gpu_and_precision() -> None:
    from orchestrator.report.references import load_references

    figures = reference_figures(load_references())
    assert figures[("K80", "fp32")].images_per_sec_per_gpu == pytest.approx((51.9 + 51.5) / 2)  # ref-01, ref-02
    assert figures[("H100", "fp32")].ids == ["ref-18", "ref-19"]
    assert ("T4", "fp32") not in figures  # the T4 row is inference
