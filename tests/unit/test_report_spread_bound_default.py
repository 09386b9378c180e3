"""The spread bound has one default (``metrics.SPREAD_BOUND``) and one range check (``metrics.check_spread_bound``):
the api, the CLI option and the derived metrics all take them from there; `report` lives in orchestrator.cli.reports."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from orchestrator import api
from orchestrator.errors import SpecError
from orchestrator.report import metrics


def test_the_api_default_is_metrics_spread_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def derived(summary: pd.DataFrame, *, baseline: str | None = None, spread_bound: float = 0.0) -> pd.DataFrame:
        seen["bound"] = spread_bound
        return summary

    monkeypatch.setattr(metrics, "SPREAD_BOUND", 0.25)
    monkeypatch.setattr(metrics, "with_derived_metrics", derived)
    api.report_frames_derived(home=tmp_path / "home")
    assert seen["bound"] == 0.25


@pytest.mark.parametrize("bound", [0.0, 1.0, -0.1, math.nan, math.inf])
def test_one_range_check_refuses_what_the_option_refuses(bound: float) -> None:
    with pytest.raises(SpecError) as checked:
        metrics.check_spread_bound(bound)
    with pytest.raises(SpecError) as derived:
        metrics.with_derived_metrics(pd.DataFrame({"run_id": ["r-1"]}), spread_bound=bound)
    assert checked.value.field == derived.value.field == "--spread-bound"
    assert checked.value.accepted == derived.value.accepted == metrics.SPREAD_ACCEPTED
    with pytest.raises(SpecError, match="--spread-bound"):
        metrics.parse_spread_bound(repr(bound))


def test_the_report_command_lives_in_its_module_with_the_default_from_metrics() -> None:
    from orchestrator.cli import cli
    from orchestrator.cli.reports import report

    assert cli.commands["report"] is report and report.callback is not None
    assert report.callback.__module__ == "orchestrator.cli.reports"
    [option] = [p for p in report.params if p.name == "spread_bound"]
    assert option.default == metrics.bound_text(metrics.SPREAD_BOUND) == "5%"
    runs = Path(__file__).resolve().parents[2] / "orchestrator" / "cli" / "runs.py"
    assert len(runs.read_text().splitlines()) <= 500
