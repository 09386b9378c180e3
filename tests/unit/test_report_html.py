"""The self-contained HTML report and the Parquet writer, on hand-made frames."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.report.frame import samples_frame, summary_frame
from orchestrator.report.html import CHARTS, render_html
from orchestrator.report.render import write_parquet
from orchestrator.store import Store

HOSTILE = "<script>alert(1)</script>"


def _sample(benchmark: str, metric: str, value: float, **metadata: object) -> dict[str, object]:
    return {"benchmark": benchmark, "metric": metric, "value": value, "unit": "", "metadata": metadata}


def _record(store: Store, run_id: str, name: str | None, samples: list[dict[str, object]], cost: float) -> None:
    store.create_run(run_id, provider="local", suite="smoke", name=name, spec={})
    store.finish_run(
        run_id, state="succeeded", duration_s=3600.0, error=None, log_tail=None,
        results={"m": {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}},
        costs=[{"machine_id": "m", "component": "compute", "seconds": 3600.0, "billed_seconds": 3600.0,
                "price_per_hour": cost, "amount_usd": cost, "rule": "per_second"}],
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path)
    recipe = {"model": "cnn", "precision": "float32"}
    _record(store, "r-1", HOSTILE, [
        _sample("train_throughput", "images_per_sec", 100.0, batch_size=32, **recipe),
        _sample("train_throughput", "images_per_sec", 180.0, batch_size=64, **recipe),
        _sample("train_curve", "accuracy", 0.6, batch_size=32, epoch=1, elapsed_s=10.0, restored=False, **recipe),
        _sample("train_curve", "accuracy", 0.9, batch_size=32, epoch=2, elapsed_s=20.0, restored=False, **recipe),
        _sample("deploy", "model_bytes_gzip", 2_000_000.0, batch_size=32, **recipe),
        _sample("deploy", "latency_ms_p50", 3.5, batch_size=32, **recipe),
    ], cost=0.9)
    _record(store, "r-2", None, [
        _sample("train_throughput", "images_per_sec", 400.0, batch_size=32, model=HOSTILE),
    ], cost=3.06)
    return store


def _report(store: Store) -> str:
    samples = samples_frame(store, ["r-1", "r-2"])
    return render_html(samples, summary_frame(samples), title=f"report {HOSTILE}")


def _chart(page: str, name: str) -> str:
    match = re.search(rf'<figure class="chart" data-chart="{name}".*?</figure>', page, re.S)
    assert match, f"chart {name} missing"
    return match.group(0)


def test_every_chart_is_drawn_with_a_mark_per_point(store: Store) -> None:
    page = _report(store)
    marks = {name: len(re.findall(r'class="mark"', _chart(page, name))) for name in CHARTS}
    # Two priced recipes on r-1 and one on r-2; batch curves for r-1 (2 sizes) and r-2; one curve of 2 epochs.
    assert marks == {"throughput_vs_price": 3, "images_per_dollar": 3, "batch_size_curves": 3,
                     "accuracy_vs_time": 2, "deployment": 1}
    assert 'data-points="3"' in _chart(page, "images_per_dollar")
    assert '<path class="line"' in _chart(page, "accuracy_vs_time")
    assert 'data-table="summary"' in page


def test_images_per_dollar_uses_the_runs_price_per_hour(store: Store) -> None:
    page = _report(store)
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    bars = dict(data["charts"]["images_per_dollar"]["bars"])
    [r2] = [value for label, value in bars.items() if label.startswith("r-2")]
    assert r2 == pytest.approx(400 * 3600 / 3.06)


def test_every_legend_names_a_run_the_same_way_its_name_else_its_id(store: Store) -> None:
    page = _report(store)
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    labels = [series["label"] for chart in data["charts"].values() for series in chart["series"]]
    labels += [label for chart in data["charts"].values() for label, _ in chart["bars"]]
    # r-1 has a name (the hostile string): no legend calls it by its id; r-2 has none: its id.
    assert labels and not any("r-1" in label for label in labels)
    named = [label for label in labels if HOSTILE in label]
    assert {chart for chart, body in data["charts"].items()
            if any(HOSTILE in s["label"] for s in body["series"]) or any(HOSTILE in b[0] for b in body["bars"])} \
        == {"throughput_vs_price", "images_per_dollar", "batch_size_curves", "accuracy_vs_time", "deployment"}
    assert named and any(label.startswith("r-2") or " on r-2" in label for label in labels)


def test_strings_from_the_data_are_escaped_everywhere(store: Store) -> None:
    page = _report(store)
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Only the report's own two scripts open a <script> element; the JSON cannot close one early.
    assert page.count("<script") == 2 and page.count("</script>") == 2


def test_the_page_references_nothing_on_the_network(store: Store) -> None:
    page = _report(store)
    assert "http://" not in page and "https://" not in page
    assert not re.search(r'\b(src|href)=', page)


def test_a_chart_without_data_says_so(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _record(store, "r-1", None, [_sample("train_throughput", "images_per_sec", 10.0, model="cnn")], cost=0.0)
    samples = samples_frame(store, ["r-1"])
    page = render_html(samples, summary_frame(samples))
    assert "no deployment samples" in _chart(page, "deployment")
    assert 'data-points="0"' in _chart(page, "throughput_vs_price")  # a free run has no images per dollar


def test_parquet_keeps_every_column_and_row(store: Store, tmp_path: Path) -> None:
    import pandas as pd

    samples = samples_frame(store, ["r-1", "r-2"])
    write_parquet(samples, tmp_path / "samples.parquet")
    back = pd.read_parquet(tmp_path / "samples.parquet")
    assert list(back.columns) == list(samples.columns) and len(back) == len(samples)
    assert back["value"].tolist() == samples["value"].tolist()
