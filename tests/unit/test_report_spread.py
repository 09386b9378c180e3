"""The spread of every throughput's repeats in the report: carried as columns, noisy figures flagged and marked."""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from rich.console import Console

from orchestrator import api
from orchestrator.cli import cli
from orchestrator.errors import SpecError
from orchestrator.report.campaign import campaign_frame, cells_reading, render_campaign_text
from orchestrator.report.frame import frames, samples_frame, summary_frame
from orchestrator.report.html import render_html
from orchestrator.report.metrics import parse_spread_bound, spread_flag, with_derived_metrics
from orchestrator.report.render import render_text, rich_table
from orchestrator.store import Store

NOISY = [100.0, 130.0, 90.0]  # cv 19.5%
QUIET = [100.0, 101.0, 99.0]  # cv 1.0%
RECIPE = {"model": "resnet50", "batch_size": 64, "precision": "float32", "backend": "tensorflow",
          "data": "synthetic"}


def _throughput(repeats: list[float], benchmark: str = "train_throughput") -> list[dict[str, Any]]:
    """The rows the payload writes for one repeated throughput figure (results.schema.json)."""
    metadata = {**RECIPE, "repeats_timed": len(repeats)}

    def row(metric: str, value: float, unit: str = "images/s", **extra: Any) -> dict[str, Any]:
        return {"benchmark": benchmark, "metric": metric, "value": value, "unit": unit,
                "metadata": {**metadata, **extra}}

    rows = [row("images_per_sec", statistics.median(repeats)), row("images_per_sec_min", min(repeats)),
            row("images_per_sec_max", max(repeats))]
    if len(repeats) > 1:
        rows.append(row("images_per_sec_cv", statistics.stdev(repeats) / statistics.mean(repeats), "fraction"))
    return rows + [row("images_per_sec_repeat", value, repeat_index=i) for i, value in enumerate(repeats, 1)]


def _record(store: Store, run_id: str, hosts: dict[str, list[dict[str, Any]]]) -> None:
    store.create_run(run_id, provider="local", suite="throughput", name=None, spec={})
    store.finish_run(run_id, state="succeeded", duration_s=60.0, error=None, log_tail=None,
                     results={host: {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}
                              for host, samples in hosts.items()}, costs=[])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A run whose training repeats spread 19.5%, one whose spread 1%, and one recorded before the spread was."""
    with Store(tmp_path) as store:
        _record(store, "r-noisy", {"localhost": _throughput(NOISY) + _throughput(QUIET, "inference_throughput")})
        _record(store, "r-quiet", {"localhost": _throughput(QUIET)})
        _record(store, "r-old", {"localhost": _throughput([120.0])[:1]})  # images_per_sec alone, as before
    return tmp_path


def _by_run(summary: pd.DataFrame) -> dict[str, pd.Series]:
    return {str(row["run_id"]): row for _, row in summary.iterrows()}


def test_only_the_noisy_run_is_flagged(home: Path) -> None:
    _, summary = api.report_frames_derived(home=home)
    rows = _by_run(summary)
    assert rows["r-noisy"]["spread_flag"] == "train cv 19.5% > 5%"
    assert rows["r-quiet"]["spread_flag"] is None
    assert rows["r-old"]["spread_flag"] is None  # no repeats' figures: nothing to flag
    assert rows["r-noisy"]["train_images_per_sec"] == 100.0  # the median repeat, as before
    assert rows["r-noisy"]["train_images_per_sec_cv"] == pytest.approx(statistics.stdev(NOISY) / (320 / 3))
    assert (rows["r-noisy"]["train_images_per_sec_min"], rows["r-noisy"]["train_images_per_sec_max"]) == (90, 130)
    assert rows["r-noisy"]["inference_images_per_sec_cv"] == pytest.approx(0.01)
    assert pd.isna(rows["r-old"]["train_images_per_sec_cv"])


def test_a_looser_bound_unflags_it_and_both_figures_are_named_when_both_are_noisy(home: Path) -> None:
    _, summary = api.report_frames_derived(home=home, spread_bound=0.5)
    assert summary["spread_flag"].isna().all()
    _, summary = api.report_frames_derived(home=home, spread_bound=0.005)
    assert _by_run(summary)["r-noisy"]["spread_flag"] == "train cv 19.5% > 0.5%; inference cv 1.0% > 0.5%"
    with pytest.raises(SpecError, match="spread-bound"):
        api.report_frames_derived(home=home, spread_bound=1.0)


def test_a_repeat_is_a_sample_not_a_summary_column(home: Path) -> None:
    samples, summary = frames(Store(home), ["r-noisy", "r-quiet"])
    rebuilt = summary_frame(samples_frame(Store(home), ["r-noisy", "r-quiet"]))
    for built in (summary, rebuilt):
        assert not [column for column in built.columns if "repeat" in column]
        assert len(built) == 2  # repeat_index does not split a recipe into rows
    every = samples_frame(Store(home), ["r-noisy"])
    repeats = every[every["metric"] == "images_per_sec_repeat"]
    assert sorted(repeats["value"]) == sorted(NOISY + QUIET) and set(repeats["repeat_index"]) == {1, 2, 3}


def test_a_total_over_two_hosts_sums_the_medians_and_leaves_the_spread_blank(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        _record(store, "r-two", {"box0": _throughput(NOISY), "box1": _throughput(QUIET)})
    _, summary = api.report_frames_derived(home=tmp_path)
    rows = {str(row["host"]): row for _, row in summary.iterrows()}
    assert rows["all 2"]["train_images_per_sec"] == 200.0
    for column in ("train_images_per_sec_cv", "train_images_per_sec_min", "train_images_per_sec_max"):
        assert pd.isna(rows["all 2"][column]), column
    assert rows["box0"]["spread_flag"] == "train cv 19.5% > 5%" and rows["all 2"]["spread_flag"] is None


def _table_text(summary: pd.DataFrame, bound: float) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=250, color_system=None).print(rich_table(summary, "t", spread_bound=bound))
    return buffer.getvalue()


def test_markdown_and_table_mark_the_noisy_figure_and_state_the_bound(home: Path) -> None:
    _, summary = api.report_frames_derived(home=home)
    for text in (render_text(summary, "md"), _table_text(summary, 0.05)):
        lines = {run: line for line in text.splitlines() for run in ("r-noisy", "r-quiet", "r-old") if run in line}
        assert "100 ±19.5% (noisy)" in lines["r-noisy"] and "train cv 19.5% > 5%" in lines["r-noisy"]
        assert "100 ±1.0%" in lines["r-quiet"] and "noisy" not in lines["r-quiet"]
        assert "±" not in lines["r-old"]
        assert "Figures whose repeats spread more than 5% (coefficient of variation) are marked (noisy)" \
            in " ".join(text.split())
    _, loose = api.report_frames_derived(home=home, spread_bound=0.5)
    for text in (render_text(loose, "md", spread_bound=0.5), _table_text(loose, 0.5)):
        noisy_line = next(line for line in text.splitlines() if "r-noisy" in line)
        assert "100 ±19.5%" in noisy_line and "(noisy)" not in noisy_line and "train cv" not in noisy_line
        assert "more than 50%" in " ".join(text.split())


def test_files_carry_the_numbers_and_old_runs_render_as_before(home: Path) -> None:
    _, summary = api.report_frames_derived(home=home)
    records = {r["run_id"]: r for r in json.loads(render_text(summary, "json"))}
    assert records["r-noisy"]["train_images_per_sec_max"] == 130.0
    assert records["r-noisy"]["spread_flag"] == "train cv 19.5% > 5%" and records["r-quiet"]["spread_flag"] is None
    header = render_text(summary, "csv").splitlines()[0].split(",")
    assert {"train_images_per_sec_cv", "train_images_per_sec_min", "spread_flag"} <= set(header)
    _, old = api.report_frames_derived(["r-old"], home=home)
    markdown = render_text(old, "md")
    assert "±" not in markdown and "coefficient of variation" not in markdown and "noisy" not in markdown


def test_the_html_table_marks_the_noisy_figure_with_a_class_and_a_title(home: Path) -> None:
    samples, summary = api.report_frames_derived(home=home, view="summary")
    page = render_html(samples, summary)
    assert 'class="num noisy" data-sort="100.0" title="repeats spread 19.5% (coefficient of variation) &gt; 5%"' \
        in page
    assert page.count(" noisy\"") == 1  # the quiet run's figures are not marked
    assert ">100 ±1.0%<" in page and "more than 5% (coefficient of variation)" in page
    assert "more than 50%" in render_html(samples, summary, spread_bound=0.5)


def test_the_campaign_cells_carry_the_flag(home: Path) -> None:
    _, summary = api.report_frames_derived(home=home, view="summary")
    cells = pd.DataFrame({"campaign": "c", "position": [0, 1], "cell_id": ["c-0", "c-1"], "where": "local",
                          "provider": "local", "suite": "throughput", "values": "", "state": "succeeded",
                          "run_id": ["r-noisy", "r-quiet"], "cost_usd": 0.0, "error": None})
    shown = cells_reading(campaign_frame(cells, summary))
    assert shown["noisy"].tolist() == ["train cv 19.5% > 5%", None]
    assert "are named in the noisy column" in render_campaign_text(campaign_frame(cells, summary), shown[:0], "md")


def test_spread_flag_on_a_frame_without_spreads_is_empty() -> None:
    frame = pd.DataFrame({"run_id": ["r-a"], "train_images_per_sec": [100.0]})
    assert spread_flag(frame).tolist() == [None]
    assert with_derived_metrics(frame)["spread_flag"].tolist() == [None]


@pytest.mark.parametrize(("text", "bound"), [("0.05", 0.05), ("5%", 0.05), ("2.5%", 0.025), ("0.5", 0.5)])
def test_a_bound_is_a_fraction_or_a_percentage(text: str, bound: float) -> None:
    assert parse_spread_bound(text) == pytest.approx(bound)


@pytest.mark.parametrize("text", ["abc", "0", "2", "1", "100%", "-0.1", "nan", "inf", "", "%"])
def test_a_bound_outside_zero_and_one_is_refused(text: str) -> None:
    with pytest.raises(SpecError, match="--spread-bound"):
        parse_spread_bound(text)


def _cli(home: Path, *argv: str) -> Any:
    return CliRunner().invoke(cli, ["report", *argv], env={"ORCHESTRATE_HOME": str(home), "COLUMNS": "250"})


def test_the_cli_flags_with_the_default_bound_and_unflags_with_a_looser_one(home: Path) -> None:
    default = _cli(home, "--format", "md")
    assert default.exit_code == 0, default.output
    noisy_line = next(line for line in default.output.splitlines() if "r-noisy" in line)
    assert "(noisy)" in noisy_line and "more than 5%" in default.output
    loose = _cli(home, "--format", "md", "--spread-bound", "0.5")
    assert loose.exit_code == 0 and "more than 50%" in loose.output
    assert "(noisy)" not in next(line for line in loose.output.splitlines() if "r-noisy" in line)
    table = _cli(home, "--spread-bound", "10%")
    assert table.exit_code == 0 and "100 ±19.5% (noisy)" in table.output and "more than 10%" in table.output
    records = json.loads(_cli(home, "--json", "--spread-bound", "0.25").output)
    assert {r["run_id"]: r["spread_flag"] for r in records} == {"r-noisy": None, "r-quiet": None, "r-old": None}
    assert "--spread-bound" in CliRunner().invoke(cli, ["report", "--help"]).output


@pytest.mark.parametrize("value", ["abc", "0", "2"])
def test_the_cli_refuses_a_bad_bound_in_one_line(home: Path, value: str) -> None:
    result = _cli(home, "--spread-bound", value)
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("error:") and "'--spread-bound'" in line and f"received {value!r}" in line
    assert "above 0 and below 1" in line
