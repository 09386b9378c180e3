"""The offers catalog: the shipped CSV, validation, the user override, filters, sorts and `orchestrate catalog`."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from orchestrator.catalog import (
    SHIPPED_PATH,
    catalog_path,
    filter_offers,
    load_offers,
    sort_offers,
    user_catalog_path,
    write_offers,
)
from orchestrator.catalog.offers import format_offers, parse_offers
from orchestrator.catalog.refresh import parse_aws_price_list, parse_azure_items
from orchestrator.cost import BILLING_RULES
from orchestrator.errors import SpecError
from tests.conftest import run_cli

REQUIRED = {
    "aws": {"p2.xlarge", "p3.2xlarge", "g4dn.xlarge", "g5.xlarge", "p4d.24xlarge", "p5.48xlarge"},
    "azure": {"Standard_NC6", "Standard_NC12", "Standard_NC24", "Standard_NC6s_v3", "Standard_NC4as_T4_v3",
              "Standard_NC24ads_A100_v4", "Standard_ND96isr_H100_v5"},
}


def test_the_shipped_catalog_loads_and_holds_the_offers_the_issue_names() -> None:
    offers = load_offers(SHIPPED_PATH)
    for provider, names in REQUIRED.items():
        assert names <= {o.instance_type for o in offers if o.provider == provider}
    assert {"rented", "owned"} <= {o.provider for o in offers}


def test_every_shipped_row_has_a_source_an_as_of_date_and_a_known_billing_rule() -> None:
    for offer in load_offers(SHIPPED_PATH):
        assert offer.source.strip() and isinstance(offer.as_of, date)
        assert offer.billing_rule in BILLING_RULES
        assert offer.billing_minimum_s == BILLING_RULES[offer.billing_rule].minimum_s
        assert offer.on_demand_per_hour > 0 and offer.gpu_count >= 1
    by_name = {o.instance_type: o for o in load_offers(SHIPPED_PATH)}
    assert by_name["p2.xlarge"].billing_rule == "aws_linux" and by_name["p2.xlarge"].billing_minimum_s == 60
    assert by_name["Standard_NC4as_T4_v3"].billing_rule == "per_minute_full"


def test_azure_k80_sizes_are_retired_on_2023_09_06_with_half_a_board_per_gpu() -> None:
    k80 = [o for o in load_offers(SHIPPED_PATH) if o.provider == "azure" and "K80" in o.accelerator]
    assert {o.instance_type: o.gpu_count for o in k80} == {"Standard_NC6": 1, "Standard_NC12": 2, "Standard_NC24": 4}
    for offer in k80:
        assert offer.status == "retired" and offer.retired_on == date(2023, 9, 6)
        assert "retire" in offer.source


def test_shipped_azure_sizes_have_spot_prices_marked_as_figures_to_confirm() -> None:
    offers = load_offers(SHIPPED_PATH)
    available = [o for o in offers if o.provider == "azure" and not o.retired]
    assert {o.instance_type for o in available} == {
        "Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4", "Standard_ND96isr_H100_v5"}
    for offer in available:
        assert offer.spot_per_hour is not None and 0 < offer.spot_per_hour < offer.on_demand_per_hour
        # Said where it comes from, and that it is not a quote: `catalog refresh --provider azure` replaces it.
        assert f"spot (added 2026-12-07): ${offer.spot_per_hour:g} = 30 % of on-demand" in offer.source
        assert offer.source.endswith("not an Azure quote: refresh")
    assert all(o.spot_per_hour is None for o in offers if o.provider == "azure" and o.retired)


def test_the_shipped_catalog_survives_a_write_and_a_reload_unchanged(tmp_path: Path) -> None:
    offers = load_offers(SHIPPED_PATH)
    write_offers(offers, tmp_path / "offers.csv")
    assert load_offers(tmp_path / "offers.csv") == offers


def test_gpu_filter_is_a_case_insensitive_substring_and_retired_offers_are_hidden_by_default() -> None:
    offers = load_offers(SHIPPED_PATH)
    assert [o.instance_type for o in filter_offers(offers, gpu="k80")] == ["p2.xlarge"]
    assert {o.instance_type for o in filter_offers(offers, gpu="K80", include_retired=True)} == {
        "p2.xlarge", "Standard_NC6", "Standard_NC12", "Standard_NC24"}
    assert {o.provider for o in filter_offers(offers, provider="AZURE", include_retired=True)} == {"azure"}
    assert filter_offers(offers, gpu="no such gpu") == []


def test_max_price_keeps_offers_at_or_under_the_price() -> None:
    offers = filter_offers(load_offers(SHIPPED_PATH), max_price=0.9, include_retired=True)
    assert offers and all(o.on_demand_per_hour <= 0.9 for o in offers)
    assert "p2.xlarge" in {o.instance_type for o in offers}  # exactly 0.90 is kept
    assert "p3.2xlarge" not in {o.instance_type for o in offers}


def test_sorting_by_price_and_by_price_per_gpu_hour() -> None:
    offers = filter_offers(load_offers(SHIPPED_PATH), gpu="K80", include_retired=True)
    by_price = [o.instance_type for o in sort_offers(offers, "price")]
    assert by_price == ["p2.xlarge", "Standard_NC6", "Standard_NC12", "Standard_NC24"]
    everything = load_offers(SHIPPED_PATH)
    per_gpu = sort_offers(everything, "price_per_gpu")
    assert [o.price_per_gpu_hour for o in per_gpu] == sorted(o.price_per_gpu_hour or 0 for o in everything)
    # Four K80 halves at $3.60/h cost more per machine-hour than one V100 at $3.06/h, less per GPU-hour.
    names = [o.instance_type for o in sort_offers(everything, "price")]
    assert names.index("p3.2xlarge") < names.index("Standard_NC24")
    names = [o.instance_type for o in per_gpu]
    assert names.index("Standard_NC24") < names.index("p3.2xlarge")
    with pytest.raises(SpecError, match="sort"):
        sort_offers(offers, "vcpus")


def test_a_user_catalog_in_orchestrate_home_replaces_the_shipped_one(home: Path) -> None:
    assert catalog_path() == SHIPPED_PATH
    only_one = [o for o in load_offers(SHIPPED_PATH) if o.instance_type == "g5.xlarge"]
    write_offers(only_one, user_catalog_path())
    assert catalog_path() == home / "offers.csv"
    assert load_offers() == only_one


def _catalog_text_with(field: str, value: str, row_index: int = 2) -> str:
    lines = format_offers(load_offers(SHIPPED_PATH)).splitlines()
    header = lines[0].split(",")
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    rows[row_index - 1][field] = value
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("on_demand_per_hour", "cheap", "a number"),
        ("gpu_count", "1.5", "a whole number"),
        ("billing_rule", "per_fortnight", "aws_linux"),
        ("status", "gone", "available or retired"),
        ("as_of", "last week", "YYYY-MM-DD"),
        ("retired_on", "", "retirement date"),  # row 7 is Standard_NC6, retired
        ("source", " ", "non-empty"),
        ("billing_minimum_s", "0", "60"),
        ("terms", "per_month_usd=350", "per_month_usd=…; utilisation=…"),  # row 14: the rented example
        ("terms", "per_month_usd=350; utilisation=2", "utilisation in (0, 1]"),
        ("terms", "per_month_usd=lots; utilisation=0.5", "name=number pairs"),
        ("on_demand_per_hour", "0.5", "0.9589, the hourly price its terms give"),
    ],
)
def test_a_bad_value_names_the_row_the_field_and_the_value(field: str, value: str, accepted: str) -> None:
    row = 7 if field == "retired_on" else 14 if field == "terms" or accepted.endswith("terms give") else 2
    with pytest.raises(SpecError) as caught:
        parse_offers(_catalog_text_with(field, value, row), origin="my.csv")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"my.csv: row {row} (line {row + 1}): invalid {field}: received {value!r}")
    assert accepted in message


def test_terms_belong_to_rented_and_owned_rows_and_a_file_without_the_column_still_loads() -> None:
    with pytest.raises(SpecError, match="invalid terms: received 'watts=5'; accepted: empty on a cloud row"):
        parse_offers(_catalog_text_with("terms", "watts=5", 2))
    without = "\n".join(line.rsplit(",", 1)[0] for line in format_offers(load_offers(SHIPPED_PATH)).splitlines()
                         if "example-" not in line)
    offers = parse_offers(without + "\n")  # rows written before the terms column existed
    assert len(offers) == 13 and all(offer.terms == "" for offer in offers)


def test_a_bad_header_and_a_duplicate_row_are_named() -> None:
    with pytest.raises(SpecError, match=r"bad header \(missing accelerator, gpu_count"):
        parse_offers("provider,instance_type\naws,p2.xlarge\n")
    text = format_offers(load_offers(SHIPPED_PATH))
    lines = text.splitlines()
    with pytest.raises(SpecError, match=r"row 16 \(line 17\): duplicate of row 1: aws/p2.xlarge/us-east-1"):
        parse_offers(text + lines[1] + "\n")


def test_a_malformed_override_file_is_one_line_on_stderr_naming_row_and_field(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "offers.csv").write_text(_catalog_text_with("vcpus", "-4", 3))
    result = run_cli(home, "catalog", timeout=60)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "offers.csv: row 3 (line 4): invalid vcpus: received '-4'" in line


def test_catalog_gpu_k80_all_json_lists_the_k80_offers_with_their_sources(home: Path) -> None:
    result = run_cli(home, "catalog", "--gpu", "K80", "--all", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    offers = json.loads(result.stdout)
    assert [o["instance_type"] for o in offers] == ["p2.xlarge", "Standard_NC6", "Standard_NC12", "Standard_NC24"]
    nc24 = offers[-1]
    assert (nc24["status"], nc24["retired_on"], nc24["gpu_count"]) == ("retired", "2023-09-06", 4)
    assert nc24["price_per_gpu_hour"] == pytest.approx(0.9)
    assert all(o["source"] and o["as_of"] for o in offers)


def test_catalog_table_hides_retired_offers_unless_asked(home: Path) -> None:
    result = run_cli(home, "catalog", "--provider", "azure", "--max-price", "4", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Standard_NC4as_T4_v3" in result.stdout and "Standard_NC6 " not in result.stdout
    assert "Standard_ND96isr_H100_v5" not in result.stdout  # over the price
    everything = run_cli(home, "catalog", "--provider", "azure", "--all", timeout=60)
    assert "Standard_NC6 " in everything.stdout and "retired" in everything.stdout


def test_aws_price_list_parsing_prefers_plain_linux_on_demand() -> None:
    def product(operation: str, usd: str, **attributes: str) -> dict[str, object]:
        return {
            "product": {"attributes": {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                                       "capacitystatus": "Used", "operation": operation, **attributes}},
            "terms": {"OnDemand": {"t": {"priceDimensions": {"d": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}},
        }

    documents: list[str | dict[str, object]] = [
        json.dumps(product("RunInstances:0004", "3.56")), product("RunInstances", "3.06"),
        product("RunInstances", "1.00", marketoption="CapacityBlock"),
        product("RunInstances", "0.50", tenancy="Dedicated"),
    ]
    price = parse_aws_price_list(documents)
    assert price is not None and price.on_demand_per_hour == 3.06 and price.spot_per_hour is None
    assert parse_aws_price_list([]) is None


def test_azure_item_parsing_skips_windows_and_low_priority_and_reads_spot() -> None:
    base = {"armSkuName": "Standard_NC6", "armRegionName": "eastus", "type": "Consumption",
            "unitOfMeasure": "1 Hour", "productName": "Virtual Machines NC Series", "effectiveStartDate": "2020"}
    items = [
        {**base, "skuName": "NC6", "meterName": "NC6", "retailPrice": 1.5, "productName": "… Series Windows"},
        {**base, "skuName": "NC6 Low Priority", "meterName": "NC6 Low Priority", "retailPrice": 0.18},
        {**base, "skuName": "NC6 Spot", "meterName": "NC6 Spot", "retailPrice": 0.2},
        {**base, "skuName": "NC6", "meterName": "NC6", "retailPrice": 0.9},
        {**base, "skuName": "NC6", "meterName": "NC6", "retailPrice": 0.99, "armRegionName": "westeurope"},
    ]
    price = parse_azure_items(items, "Standard_NC6", "eastus")
    assert price is not None and (price.on_demand_per_hour, price.spot_per_hour) == (0.9, 0.2)
    assert parse_azure_items(items[:3], "Standard_NC6", "eastus") is None
