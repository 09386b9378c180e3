"""`orchestrate breakeven` on a store with one run, as a real process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import FAKE_MAIN_HEADER, run_cli

pytestmark = pytest.mark.slow

INVENTORY = """
hosts:
  - name: devbox
    host: 127.0.0.1
    user: me
    key_path: ~/.ssh/id_ed25519
    trust_on_first_use: true
    gpu: {model: V100, count: 1}
    price: {owned: {purchase_usd: 2000, lifetime_years: 3, watts: 350, kwh_usd: 0.15}}
"""


@pytest.fixture
def one_run(home: Path, fake_payload: Callable[[str], Path]) -> Path:
    package = fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", 100.0)])\n')
    result = run_cli(home, "run", "--provider", "local", "--price-per-hour", "0.5",
                     ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 0, result.stdout + result.stderr
    (home / "inventory.yaml").write_text(INVENTORY)
    return home


def test_breakeven_prints_each_option_and_the_hours_where_owning_beats_renting(one_run: Path) -> None:
    result = run_cli(one_run, "breakeven", "--gpu-hours-per-month", "200", "--gpu", "V100")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100.0 training images/s per GPU" in result.stdout
    # $2,000 over 36 months against p3.2xlarge's $3.06/h less 0.35 kW × $0.15: 55.56 / 3.0075 = 18.5 h.
    assert "owning devbox beats aws p3.2xlarge (us-east-1) above 18.5 GPU-hours/month" in result.stdout
    assert "$66.06" in result.stdout  # the devbox's month: 55.56 + 200 × 0.0525


def test_breakeven_json_has_the_figures(one_run: Path) -> None:
    result = run_cli(one_run, "breakeven", "--gpu-hours-per-month", "200", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images_per_sec_per_gpu"] == 100.0 and len(report["throughput_runs"]) == 1
    k80 = next(row for row in report["rows"] if row["option"]["name"] == "aws p2.xlarge (us-east-1)")
    assert k80["monthly_cost_usd"] == pytest.approx(180.0)
    assert k80["usd_per_million_images"] == pytest.approx(2.5)
    assert k80["break_even"]["hours"] == pytest.approx(65.553, abs=1e-3)


def test_negative_hours_exit_2_with_one_line(one_run: Path) -> None:
    result = run_cli(one_run, "breakeven", "--gpu-hours-per-month", "-5")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "-5" in result.stderr
    assert "Traceback" not in result.stderr
