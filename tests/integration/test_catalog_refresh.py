"""`orchestrate catalog refresh` against recorded AWS Price List and Azure Retail Prices responses on 127.0.0.1."""

from __future__ import annotations

import csv
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.catalog.offers import COLUMNS, SHIPPED_PATH
from orchestrator.catalog.refresh import fetch_azure_prices, refresh_catalog
from orchestrator.errors import AuthError, ProviderError
from tests.conftest import run_cli

FIXTURES = Path(__file__).with_name("fixtures")
AZURE_PATH = "/api/retail/prices"


@dataclass
class PriceServer:
    """Serves recorded price-API responses and remembers every request it was sent."""

    url: str = ""
    fail_with: int | None = None  # answer every request with this HTTP status
    spot_meters: bool = True  # False: the Azure pages leave out their Spot meters
    requests: list[dict[str, Any]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    @property
    def state(self) -> PriceServer:
        state: PriceServer = self.server.state  # type: ignore[attr-defined]
        return state

    def _send(self, status: int, body: dict[str, Any] | str, content_type: str = "application/json") -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # AWS Price List API: JSON-RPC over POST; EC2: the query API (form in, XML out)
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            self._ec2(urllib.parse.parse_qs(raw.decode()))
            return
        body = json.loads(raw or b"{}")
        self.state.requests.append({"target": self.headers.get("X-Amz-Target"), "body": body,
                                    "signed": "AWS4-HMAC-SHA256" in self.headers.get("Authorization", "")})
        if self.state.fail_with:
            self._send(self.state.fail_with, {"__type": "AccessDeniedException", "message": "User is not authorized"},
                       "application/x-amz-json-1.1")
            return
        filters = {item["Field"]: item["Value"] for item in body.get("Filters", [])}
        instance_type = filters.get("instanceType", "")
        if body.get("NextToken") == "page-2-token":
            name = f"aws_get_products_{instance_type}_page2.json"
        elif (FIXTURES / f"aws_get_products_{instance_type}_page1.json").exists():
            name = f"aws_get_products_{instance_type}_page1.json"
        else:
            name = f"aws_get_products_{instance_type}.json"
        path = FIXTURES / name
        page = json.loads(path.read_text()) if path.exists() else {"FormatVersion": "aws_v1", "PriceList": []}
        self._send(200, page, "application/x-amz-json-1.1")

    def _ec2(self, form: dict[str, list[str]]) -> None:
        self.state.requests.append({"action": form.get("Action", [""])[0], "form": form,
                                    "signed": "AWS4-HMAC-SHA256" in self.headers.get("Authorization", "")})
        if self.state.fail_with or self.path.startswith("/refuse"):
            error = ("<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to "
                     "perform this operation.</Message></Error></Errors><RequestID>r-1</RequestID></Response>")
            self._send(self.state.fail_with or 403, error, "text/xml")
            return
        page = 2 if form.get("NextToken") == ["spot-page-2"] else 1
        self._send(200, (FIXTURES / f"aws_spot_price_history_page{page}.xml").read_text(), "text/xml")

    def do_GET(self) -> None:  # Azure Retail Prices API
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        self.state.requests.append({"path": url.path, "query": query})
        if self.state.fail_with:
            self._send(self.state.fail_with, {"Error": {"Code": "Forbidden", "Message": "no"}})
            return
        page_filter = query.get("$filter", [""])[0]
        page: dict[str, Any] = {"Items": [], "NextPageLink": None, "Count": 0}
        if url.path == AZURE_PATH and "Standard_NC4as_T4_v3" in page_filter:
            number = 2 if query.get("$skip") == ["100"] else 1
            text = (FIXTURES / f"azure_prices_nc4as_t4_v3_page{number}.json").read_text()
            if not self.state.spot_meters:
                recorded = json.loads(text)
                recorded["Items"] = [i for i in recorded["Items"] if not i["meterName"].endswith(" Spot")]
                text = json.dumps(recorded)
            # The recorded next link names the real API, as it would; point it back at this server.
            self._send(200, text.replace("https://prices.azure.com:443", self.state.url))
            return
        self._send(200, page)


@pytest.fixture
def price_server() -> Iterator[PriceServer]:
    """A recorded-response server for both price APIs on a free port of 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = PriceServer(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _row(**overrides: str) -> dict[str, str]:
    row = {
        "provider": "aws", "instance_type": "p3.2xlarge", "accelerator": "V100 16GB", "gpu_count": "1",
        "gpu_memory_gib": "16", "vcpus": "8", "memory_gib": "61", "region": "us-east-1",
        "on_demand_per_hour": "2.5", "spot_per_hour": "", "billing_rule": "aws_linux", "billing_minimum_s": "60",
        "status": "available", "retired_on": "", "as_of": "2020-01-01", "source": "an old note",
    }
    row.update(overrides)
    return row


def _write_catalog(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _read(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as file:
        return {row["instance_type"]: row for row in csv.DictReader(file)}


def test_aws_refresh_writes_the_new_on_demand_prices_and_todays_date(home: Path, price_server: PriceServer) -> None:
    catalog = home / "offers.csv"
    _write_catalog(catalog, [
        _row(),
        _row(instance_type="g4dn.xlarge", accelerator="T4", on_demand_per_hour="0.4", spot_per_hour="0.2"),
        _row(instance_type="p5.48xlarge", accelerator="H100 80GB", gpu_count="8", on_demand_per_hour="98.32"),
        _row(provider="azure", instance_type="Standard_NC4as_T4_v3", region="eastus", billing_rule="per_minute_full",
             billing_minimum_s="0", on_demand_per_hour="0.6"),
    ])
    result = run_cli(home, "catalog", "refresh", "--provider", "aws", "--endpoint-url", price_server.url,
                     "--spot-endpoint-url", price_server.url, timeout=60, **AWS_ENV)
    assert result.returncode == 0, result.stderr
    rows = _read(catalog)
    today = date.today().isoformat()
    # Page 1 holds a "Linux with SQL Web" product (RunInstances:0004) at 3.56: the plain Linux one on page 2 wins.
    assert rows["p3.2xlarge"]["on_demand_per_hour"] == "3.06"
    assert rows["g4dn.xlarge"]["on_demand_per_hour"] == "0.526"
    # Spot: each zone's newest Linux/UNIX price, the lowest zone quoted (g4dn: 1a's newest 0.21, 1b 0.158;
    # p3: 1c 0.918, 1d 1.01 on page 2; the SUSE item is not Linux/UNIX).
    assert rows["g4dn.xlarge"]["spot_per_hour"] == "0.158"
    assert rows["p3.2xlarge"]["spot_per_hour"] == "0.918"
    assert "lowest of 2 zone(s) (us-east-1c)" in rows["p3.2xlarge"]["source"]
    for name in ("p3.2xlarge", "g4dn.xlarge"):
        assert rows[name]["as_of"] == today and "AWS Price List API" in rows[name]["source"]
        assert "DescribeSpotPriceHistory" in rows[name]["source"]
    assert rows["p5.48xlarge"]["on_demand_per_hour"] == "98.32" and rows["p5.48xlarge"]["as_of"] == "2020-01-01"
    assert rows["Standard_NC4as_T4_v3"]["on_demand_per_hour"] == "0.6"  # another provider's row is untouched
    assert "p3.2xlarge us-east-1: on-demand $2.5 → $3.06" in result.stdout
    assert "p5.48xlarge us-east-1: no price found" in result.stdout
    first = price_server.requests[0]
    assert first["target"] == "AWSPriceListService.GetProducts" and first["signed"]
    filters = {item["Field"]: item["Value"] for item in first["body"]["Filters"]}
    assert filters == {"instanceType": "p3.2xlarge", "regionCode": "us-east-1", "operatingSystem": "Linux",
                       "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}
    assert price_server.requests[1]["body"]["NextToken"] == "page-2-token"
    spot = [r for r in price_server.requests if r.get("action") == "DescribeSpotPriceHistory"]
    assert len(spot) == 2 and all(r["signed"] for r in spot)
    form = spot[0]["form"]
    # Only the types the Price List API priced are asked (p5.48xlarge had no price), Linux/UNIX, now.
    assert sorted(v for k, v in form.items() if k.startswith("InstanceType.")) == [["g4dn.xlarge"], ["p3.2xlarge"]]
    assert form["ProductDescription.1"] == ["Linux/UNIX"] and form["StartTime"] == form["EndTime"]
    assert spot[1]["form"]["NextToken"] == ["spot-page-2"]
    assert "p3.2xlarge us-east-1: on-demand $2.5 → $3.06, spot - → $0.918" in result.stdout


def test_a_refused_spot_price_call_writes_nothing(home: Path, price_server: PriceServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    catalog = home / "offers.csv"
    _write_catalog(catalog, [_row()])
    before = catalog.read_bytes()
    with pytest.raises(AuthError, match="EC2 API refused DescribeSpotPriceHistory: UnauthorizedOperation"):
        refresh_catalog("aws", endpoint_url=price_server.url, home=home,
                        spot_endpoint_url=price_server.url + "/refuse")
    assert catalog.read_bytes() == before


def test_azure_refresh_follows_next_page_links_and_leaves_the_shipped_catalog_alone(
    home: Path, price_server: PriceServer
) -> None:
    shipped = SHIPPED_PATH.read_bytes()
    result = refresh_catalog("azure", endpoint_url=price_server.url + AZURE_PATH, home=home,
                             today=date(2026, 11, 30))
    assert result.path == home / "offers.csv"
    assert SHIPPED_PATH.read_bytes() == shipped
    rows = _read(result.path)
    t4 = rows["Standard_NC4as_T4_v3"]
    # Page 1: a Windows meter and a Low Priority meter, both skipped; page 2: an older and a newer Linux
    # pay-as-you-go meter (the newer wins) and the Spot meter.
    assert (t4["on_demand_per_hour"], t4["spot_per_hour"], t4["as_of"]) == ("0.526", "0.0526", "2026-11-30")
    assert "Azure Retail Prices API" in t4["source"] and "spot: its Spot meter" in t4["source"]
    assert "not an Azure quote" not in t4["source"]  # the shipped row's illustrative spot figure is gone
    # Sizes the API had no price for keep their rows, the shipped spot figure marked as one to confirm.
    a100 = rows["Standard_NC24ads_A100_v4"]
    assert a100["as_of"] != "2026-11-30" and a100["spot_per_hour"] and "not an Azure quote: refresh" in a100["source"]
    assert rows["Standard_NC6"]["status"] == "retired" and rows["Standard_NC6"]["as_of"] != "2026-11-30"
    t4_requests = [r for r in price_server.requests if "Standard_NC4as_T4_v3" in r["query"]["$filter"][0]]
    assert [r["query"].get("$skip") for r in t4_requests] == [None, ["100"]]
    assert "priceType eq 'Consumption'" in t4_requests[0]["query"]["$filter"][0]


def test_a_size_without_a_spot_meter_is_refreshed_to_no_spot_price_saying_so(
    home: Path, price_server: PriceServer
) -> None:
    price_server.spot_meters = False
    result = refresh_catalog("azure", endpoint_url=price_server.url + AZURE_PATH, home=home,
                             today=date(2026, 12, 7))
    t4 = _read(result.path)["Standard_NC4as_T4_v3"]
    assert (t4["on_demand_per_hour"], t4["spot_per_hour"]) == ("0.526", "")
    assert "spot: no Spot meter for this size here, so not offered on spot" in t4["source"]


def test_after_an_azure_refresh_a_spot_dry_run_plans_spot_at_the_api_s_price(
    home: Path, price_server: PriceServer
) -> None:
    refreshed = run_cli(home, "catalog", "refresh", "--provider", "azure", "--endpoint-url",
                        price_server.url + AZURE_PATH, timeout=60)
    assert refreshed.returncode == 0, refreshed.stderr
    assert "Standard_NC4as_T4_v3 eastus: on-demand $0.526 → $0.526, spot $0.158 → $0.0526" in refreshed.stdout
    plan = run_cli(home, "run", "--provider", "azure", "--instance-type", "Standard_NC4as_T4_v3", "--spot",
                   "--dry-run", AZURE_SUBSCRIPTION_ID="", timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert "1. azure Standard_NC4as_T4_v3 in eastus spot, $0.0526/h" in plan.stdout
    assert "2. azure Standard_NC4as_T4_v3 in eastus on-demand, $0.526/h" in plan.stdout  # the fallback
    assert not (home / "state.db").exists()


def test_an_http_error_is_one_clear_line_and_the_catalog_on_disk_is_unchanged(
    home: Path, price_server: PriceServer
) -> None:
    catalog = home / "offers.csv"
    _write_catalog(catalog, [_row(provider="azure", instance_type="Standard_NC4as_T4_v3", region="eastus",
                                  billing_rule="per_minute_full", billing_minimum_s="0")])
    before = catalog.read_bytes()
    price_server.fail_with = 403
    result = run_cli(home, "catalog", "refresh", "--provider", "azure", "--endpoint-url",
                     price_server.url + AZURE_PATH, timeout=60)
    assert result.returncode == 1
    [line, hint] = result.stderr.strip().splitlines()
    assert line.startswith("error: Azure Retail Prices API at") and "HTTP 403" in line
    assert hint.startswith("hint:")
    assert "Traceback" not in result.stderr
    assert catalog.read_bytes() == before
    assert [p.name for p in home.iterdir()] == ["offers.csv"]  # no temporary file left behind


def test_aws_refused_credentials_are_an_auth_error_and_nothing_is_written(
    home: Path, price_server: PriceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    price_server.fail_with = 400
    with pytest.raises(AuthError, match="AccessDeniedException"):
        refresh_catalog("aws", endpoint_url=price_server.url, home=home)
    assert not (home / "offers.csv").exists()


def test_missing_aws_credentials_are_an_auth_error_with_a_hint(
    home: Path, price_server: PriceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.setenv(name, AWS_ENV[name])
    with pytest.raises(AuthError) as caught:
        refresh_catalog("aws", endpoint_url=price_server.url, home=home)
    assert caught.value.hint and "AWS_ACCESS_KEY_ID" in caught.value.hint
    assert price_server.requests == []


def test_azure_server_errors_are_retried_a_bounded_number_of_times(price_server: PriceServer) -> None:
    price_server.fail_with = 503
    waits: list[float] = []
    with pytest.raises(ProviderError, match="HTTP 503.*gave up after 3 tries"):
        fetch_azure_prices(["Standard_NC4as_T4_v3"], "eastus", base_url=price_server.url + AZURE_PATH,
                           sleep=waits.append)
    assert len(price_server.requests) == 3
    assert waits == [1.0, 2.0]


def test_an_unreachable_azure_endpoint_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="cannot connect"):
        fetch_azure_prices(["Standard_NC4as_T4_v3"], "eastus", base_url="http://127.0.0.1:9/api/retail/prices",
                           timeout_s=2, sleep=lambda _: None)
