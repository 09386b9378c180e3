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
    # The run ran without a GPU: its 100 images/s is not lent to a V100; the published ResNet-50 figure is used.
    assert "published ResNet-50 fp32 training figures (no run measured a GPU" in result.stdout
    # $2,000 over 36 months against p3.2xlarge's $3.06/h less 0.35 kW × $0.15: 55.56 / 3.0075 = 18.5 h.
    assert result.stdout.count("owning devbox beats aws p3.2xlarge (us-east-1) above 18.5 GPU-hours/month") == 1
    assert "$66.06" in result.stdout  # the devbox's month: 55.56 + 200 × 0.0525


def test_breakeven_json_has_the_figures(one_run: Path) -> None:
    result = run_cli(one_run, "breakeven", "--gpu-hours-per-month", "200", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    [measured] = report["measured"]
    assert measured["images_per_sec_per_gpu"] == 100.0 and measured["gpu"] is None
    k80 = next(row for row in report["rows"] if row["option"]["name"] == "aws p2.xlarge (us-east-1)")
    assert k80["monthly_cost_usd"] == pytest.approx(180.0)
    # K80: the median of the published ResNet-50 rows ref-01 and ref-02, 51.7 images/s:
    # $0.90 / (51.7 × 3600) × 1e6 = $4.836 per million images.
    assert k80["throughput"]["basis"] == "published" and k80["throughput"]["images_per_sec_per_gpu"] == 51.7
    assert k80["usd_per_million_images"] == pytest.approx(0.90 / (51.7 * 3600) * 1e6)
    assert k80["break_even"]["hours"] == pytest.approx(65.553, abs=1e-3)
    spot = next(row for row in report["rows"] if row["option"]["name"] == "aws p3.2xlarge (us-east-1) spot")
    assert spot["option"]["kind"] == "spot" and spot["monthly_cost_usd"] == pytest.approx(0.918 * 200)
    kinds = {row["option"]["kind"] for row in report["rows"]}
    assert {"on-demand", "spot", "rented-monthly", "owned"} <= kinds  # the catalog's rented and owned rows too


def test_a_run_on_a_gpu_prices_that_gpu_by_its_own_figure_and_scales_to_others(home: Path) -> None:
    """A run whose machine reported a K80: the p2.xlarge uses the measured figure, the V100 a scaled one."""
    import sqlite3

    from orchestrator.store import Store

    Store(home).close()  # creates the store
    with sqlite3.connect(home / "state.db") as db:
        db.execute(
            "INSERT INTO runs (id, state, provider, suite, created_at, spec_json, host_json) VALUES "
            "('r-k80', 'succeeded', 'aws', 'throughput', '2026-11-28T10:00:00Z', '{}', ?)",
            (json.dumps({"gpus": [{"name": "Tesla K80", "memory_mib": 11441}]}),))
        db.execute(
            "INSERT INTO samples (run_id, benchmark, metric, value, unit, metadata_json) VALUES "
            "('r-k80', 'train_throughput', 'images_per_sec', 40.0, 'images/s', ?)",
            (json.dumps({"precision": "float32"}),))
    result = run_cli(home, "breakeven", "--gpu-hours-per-month", "100", "--runs", "r-k80", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["option"]["name"]: row for row in json.loads(result.stdout)["rows"]}
    k80 = rows["aws p2.xlarge (us-east-1)"]["throughput"]
    assert (k80["basis"], k80["images_per_sec_per_gpu"]) == ("measured", 40.0)
    v100 = rows["aws p3.2xlarge (us-east-1)"]["throughput"]
    # 40 × 412 (ref-05, V100 fp32+XLA) / 51.7 (ref-01/02, K80) = 318.8
    assert v100["basis"] == "scaled" and v100["images_per_sec_per_gpu"] == pytest.approx(40 * 412 / 51.7)
    assert rows["aws g5.xlarge (us-east-1)"]["throughput"] is None  # no published A10G figure


def test_negative_hours_exit_2_with_one_line(one_run: Path) -> None:
    result = run_cli(one_run, "breakeven", "--gpu-hours-per-month", "-5")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "-5" in result.stderr
    assert "Traceback" not in result.stderr
