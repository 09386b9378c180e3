"""Campaign views name cells by what varies between them (the terminal table at 160 columns, the HTML legend, the
one-line events), and the runner builds its progress view only for a display that redraws it, each finished cell's
row once."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path
from typing import Any, cast

import pandas as pd
from rich.console import Console

from orchestrator.campaign.progress import CellView, Progress
from orchestrator.campaign.runner import CampaignRunner
from orchestrator.cli.campaign_views import cell_line
from orchestrator.report.campaign import best_configurations, campaign_frame, campaign_tables, render_campaign_html
from orchestrator.report.labels import narrowed, swept_labels
from orchestrator.store import Store
from orchestrator.store.campaigns import CampaignBook, NewCell

# benchmarks/sweeps/dev-box.yaml: 6 accuracy cells (learning rate × dropout), 4 throughput cells (batch sizes).
DEV_BOX = [{"suite": "accuracy", "learning_rate": lr, "dropout": dropout}
           for lr in (0.001, 0.0001) for dropout in (0.0, 0.25, 0.5)] + \
          [{"suite": "throughput", "batch_sizes": batch} for batch in (16, 32, 64, 128)]


def test_labels_name_only_what_varies_between_the_cells() -> None:
    labels = swept_labels(DEV_BOX)
    assert labels[:2] == ["accuracy · lr 0.001 · dropout 0", "accuracy · lr 0.001 · dropout 0.25"]
    assert labels[3] == "accuracy · lr 0.0001 · dropout 0" and labels[6] == "throughput · batch 16"
    assert narrowed(labels[:6])[1] == "lr 0.001 · dropout 0.25"  # among the accuracy cells, the suite goes
    assert swept_labels([{"suite": "smoke", "epochs": 1}, {"suite": "smoke", "epochs": 13}]) == ["epochs 1",
                                                                                                  "epochs 13"]
    assert swept_labels([{"suite": "smoke", "epochs": 1}]) == ["smoke · epochs 1"]  # one cell: all it has


def _dev_box_frame() -> pd.DataFrame:
    labels = swept_labels(DEV_BOX)
    cells = pd.DataFrame([{
        "campaign": "dev-box", "cell_id": f"{index:010x}", "position": index, "where": "local", "provider": "local",
        "suite": values["suite"], "state": "succeeded", "run_id": f"r-{index}", "cost_usd": 0.0009, "error": None,
        "values": ", ".join(f"{k}={v}" for k, v in values.items()), "swept": label}
        for index, (values, label) in enumerate(zip(DEV_BOX, labels, strict=True))])
    summary = pd.DataFrame([{
        "run_id": f"r-{index}", "name": f"dev-box/{index:010x}", "provider": "local", "suite": values["suite"],
        "state": "succeeded", "host": "e2e-devbox-host", "hosts": 1, "model": "small_cnn",
        "batch_size": values.get("batch_sizes", 32), "precision": "float32",
        "learning_rate": values.get("learning_rate"), "dropout": values.get("dropout"), "test_accuracy": 0.97,
        "train_images_per_sec": 812.5, "spread_flag": None, "train_images_per_usd": 58_500_000.0,
        "cost_to_accuracy_usd": 0.000123, "price_per_hour": 0.05, "cost_usd": 0.0009, "duration_s": 60.0}
        for index, values in enumerate(DEV_BOX)])
    return campaign_frame(cells, summary)


def test_the_cells_table_at_160_columns_shows_what_varies_whole_and_first() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=160, color_system=None)
    frame = _dev_box_frame()
    console.print(campaign_tables("dev-box", frame, best_configurations(frame))[1])
    text = buffer.getvalue()
    header = next(line for line in text.splitlines() if "swept" in line)
    assert header.index("swept") < header.index("state")
    assert "accuracy · lr 0.001 · dropout 0.25 " in text and "accuracy · lr 0.0001 · dropout 0.5 " in text
    assert "throughput · batch 128 " in text
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert len(rows) == 10 and not any("…" in row or "suite=" in row for row in rows)
    assert all(row.rstrip(" │").endswith(f"{index:010x}") for index, row in enumerate(rows))  # the cell id last


def test_the_html_accuracy_legend_names_curves_by_what_varies_with_the_cell_id_last() -> None:
    frame = _dev_box_frame()
    samples = pd.DataFrame([{
        "run_id": f"r-{index}", "name": f"dev-box/{index:010x}", "host": "e2e-devbox-host", "model": "small_cnn",
        "benchmark": "train_curve", "metric": "accuracy", "elapsed_s": float(epoch), "value": 0.5 + epoch / 10}
        for index in range(6) for epoch in (1, 2, 3)])
    page = render_campaign_html("dev-box", frame, best_configurations(frame), samples)
    figure = re.search(r'<figure class="chart" data-chart="accuracy_vs_time".*?</figure>', page, re.S)
    assert figure is not None
    legend = re.findall(r'<li><span class="swatch"[^>]*></span>([^<]*)</li>', figure.group(0))
    assert legend[0] == f"lr 0.001 · dropout 0 (cell {0:010x})"
    assert f"lr 0.001 · dropout 0.25 (cell {1:010x})" in legend and len(legend) == 6
    assert not any("dev-box/" in item or "small_cnn" in item for item in legend)


def test_a_cell_event_line_names_what_varies_then_the_cell() -> None:
    view = CellView("1a2b3c4d5e", "local", "suite=smoke, epochs=13", "failed", "epochs 13", "r-1",
                    error="payload exited 3")
    progress = Progress("c-1", "grid", [view], 0.0, None, 1)
    assert cell_line(view, progress).startswith("[1/1] epochs 13 on local (cell 1a2b3c4d5e): failed")


class _Process:
    """A cell's process that runs for ``polls`` polls, then records its run as succeeded and exits 0."""

    def __init__(self, store: Store, run_id: str, polls: int) -> None:
        self.store, self.run_id, self.polls, self.returncode = store, run_id, polls, None
        store.create_run(run_id, provider="local", suite="smoke", name=None, spec={})

    def poll(self) -> int | None:
        self.polls -= 1
        if self.polls > 0:
            return None
        if self.returncode is None:
            self.store.finish_run(self.run_id, state="succeeded", duration_s=1.0, error=None, log_tail=None,
                                  results=None, costs=[])
            self.returncode = 0
        return 0

    def send_signal(self, signum: int) -> None:
        return None


class _Lines:
    """A reporter that prints one line per cell event (a pipe, a CI log): it never redraws."""

    redraws = False

    def __init__(self) -> None:
        self.updates = 0
        self.lines: list[str] = []

    def update(self, progress: Progress) -> None:
        self.updates += 1

    def cell(self, view: CellView, progress: Progress) -> None:
        self.lines.append(cell_line(view, progress))

    def note(self, text: str) -> None:
        return None


def test_a_non_live_campaign_builds_no_view_per_poll_and_each_finished_cell_once(tmp_path: Path) -> None:
    with Store(tmp_path / "home") as store:
        cells = [NewCell(f"cell{i}", i, "local", {"suite": "smoke", "epochs": i}, {"provider": "local",
                                                                                   "machine": {}}, 1.0, 0.0)
                 for i in range(3)]
        CampaignBook(store).create("c-1", name="grid", file="/grid.yaml", sweep={"name": "grid"}, budget_usd=None,
                                   parallel=1, cells=cells)

        def spawn(spec_path: Path, run_id: str, log_path: Path) -> subprocess.Popen[bytes]:
            return cast(subprocess.Popen[bytes], _Process(store, run_id, polls=20))

        reporter = _Lines()
        runner = CampaignRunner(home=tmp_path / "home", store=store, campaign_id="c-1", name="grid",
                                to_run=CampaignBook(store).cells("c-1"), parallel=1, budget_usd=None,
                                reporter=reporter, spawn=spawn, sleep=lambda _s: None)
        builds = {"progress": 0}
        computed: dict[tuple[str, str], int] = {}
        progress, compute = runner.progress, runner._compute_view

        def counted_progress() -> Progress:
            builds["progress"] += 1
            return progress()

        def counted_compute(cell: Any, runs: list[str] | None) -> CellView:
            computed[(cell.cell_id, cell.state)] = computed.get((cell.cell_id, cell.state), 0) + 1
            return compute(cell, runs)

        runner.progress = counted_progress  # type: ignore[method-assign]
        runner._compute_view = counted_compute  # type: ignore[method-assign]
        outcome = runner.run()
        assert outcome.counts == {"succeeded": 3}
        assert reporter.updates == 0
        # 60 polls; a view only for each of the 6 cell events and the end.
        assert builds["progress"] == 2 * len(cells) + 1
        for _ in range(3):
            runner.progress()
        assert {cell_id: n for (cell_id, state), n in computed.items() if state == "succeeded"} == \
            {"cell0": 1, "cell1": 1, "cell2": 1}
        assert reporter.lines[-1].startswith("[3/3] epochs 2 on local (cell cell2): succeeded")
