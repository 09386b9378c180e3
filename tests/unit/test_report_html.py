"""The self-contained HTML report and the Parquet writer, on hand-made frames."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from orchestrator.cost import CostLine
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
        costs=[CostLine(component="compute", seconds=3600.0, billed_seconds=3600.0, price_per_hour=cost,
                        amount_usd=cost, rule="per_second", machine_id="m")],
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
    assert "no model size and latency measurements in these runs" in _chart(page, "deployment")
    assert 'data-points="0"' in _chart(page, "throughput_vs_price")  # a free run has no images per dollar


def test_parquet_keeps_every_column_and_row(store: Store, tmp_path: Path) -> None:
    import pandas as pd

    samples = samples_frame(store, ["r-1", "r-2"])
    write_parquet(samples, tmp_path / "samples.parquet")
    back = pd.read_parquet(tmp_path / "samples.parquet")
    assert list(back.columns) == list(samples.columns) and len(back) == len(samples)
    assert back["value"].tolist() == samples["value"].tolist()


def _legend(figure: str) -> list[tuple[str, str]]:
    """The (colour, label) pairs of a chart's legend, as a reader matches them."""
    return [(colour, html.unescape(label)) for colour, label in
            re.findall(r'<li><span class="swatch" style="background:([^"]+)"></span>(.*?)</li>', figure)]


def _priced_runs(store: Store, count: int, name: str | None = None, batch_size: int = 32) -> None:
    for i in range(count):
        _record(store, f"r-{i:02d}", name if name is not None else f"box {i:02d}", [
            _sample("train_throughput", "images_per_sec", 100.0 + 10 * i, batch_size=batch_size, model="cnn"),
        ], cost=0.5 + 0.25 * i)


def test_more_series_than_colours_keep_a_legend_where_each_colour_names_one_series(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _priced_runs(store, 14)
    page = _report_of(store)
    legend = _legend(_chart(page, "throughput_vs_price"))
    colours = [colour for colour, _ in legend]
    labels = [label for _, label in legend]
    assert len(set(colours)) == len(colours) and len(set(labels)) == len(labels), legend
    assert len(legend) <= 10
    # The fastest runs are named; the others are one grey entry that says how many it stands for.
    assert "box 13" in labels[0] and "and 5 more" in labels[-1]


def test_runs_that_share_a_name_are_told_apart_in_every_legend(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _record(store, "r-a", "v100-spot", [_sample("train_throughput", "images_per_sec", 100.0, batch_size=32,
                                                 model="cnn"),
                                        _sample("train_throughput", "images_per_sec", 150.0, batch_size=64,
                                                model="cnn")], cost=1.0)
    _record(store, "r-b", "v100-spot", [_sample("train_throughput", "images_per_sec", 120.0, batch_size=32,
                                                 model="cnn"),
                                        _sample("train_throughput", "images_per_sec", 190.0, batch_size=64,
                                                model="cnn")], cost=2.0)
    page = _report_of(store)
    for chart in ("throughput_vs_price", "batch_size_curves"):
        labels = [label for _, label in _legend(_chart(page, chart))]
        assert len(labels) == len(set(labels)), (chart, labels)
        assert any("r-a" in label for label in labels) and any("r-b" in label for label in labels)
    # Each run keeps its own curve: the two runs' points are not joined into one line.
    assert _chart(page, "batch_size_curves").count('<path class="line"') == 2


def test_control_characters_in_a_run_name_never_reach_the_page(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _record(store, "r-1", "evil\x1b[31m\u202eboxes\x07\x00", [
        _sample("train_throughput", "images_per_sec", 100.0, batch_size=32, model="cnn"),
        _sample("train_throughput", "images_per_sec", 200.0, batch_size=64, model="cnn"),
    ], cost=1.0)
    page = _report_of(store)
    legend = [label for _, label in _legend(_chart(page, "batch_size_curves"))]
    assert legend == ["cnn on evil[31mboxes"]
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", page)


def test_a_single_batch_size_is_drawn_as_bars_that_say_why_there_is_no_curve(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _priced_runs(store, 3, batch_size=32)
    figure = _chart(_report_of(store), "batch_size_curves")
    assert len(re.findall(r'<rect class="mark"', figure)) == 3 and "<circle" not in figure
    assert "batch size 32 only, so there is no curve" in figure
    assert not re.search(r'class="tick"[^>]*>3[04]<', figure)  # no made-up ticks around the one batch size


def test_empty_panels_say_what_is_missing_in_the_readers_words(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _record(store, "r-1", None, [_sample("train_throughput", "images_per_sec", 10.0, model="cnn")], cost=0.0)
    samples = samples_frame(store, ["r-1"])
    page = render_html(samples, summary_frame(samples))
    empties = dict(re.findall(r'data-chart="(\w+)"[^>]*><figcaption>.*?</figcaption><p class="empty">(.*?)</p>',
                              page))
    assert set(empties) == {"throughput_vs_price", "images_per_dollar", "batch_size_curves", "accuracy_vs_time",
                            "deployment"}
    assert empties["accuracy_vs_time"] == "no per-epoch accuracy curve in these runs (run the accuracy suite)"
    assert "(run the deploy suite)" in empties["deployment"]
    assert "--price-per-hour" in empties["throughput_vs_price"]
    for sentence in empties.values():  # internal names stay internal
        assert not re.search(r"train_curve|elapsed_s|_samples|\bsamples\b", sentence), sentence


def test_axis_ticks_stay_short_when_images_per_dollar_run_into_millions(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for i, price in enumerate((0.05, 0.09, 0.5)):
        _record(store, f"r-{i}", None, [
            _sample("train_throughput", "images_per_sec", 900.0 + i, batch_size=32, model="cnn"),
            _sample("train_throughput", "images_per_sec", 1800.0 + i, batch_size=64, model="cnn"),
        ], cost=price)
    page = _report_of(store)
    ticks = [html.unescape(t) for t in re.findall(r'<text class="tick"[^>]*>(.*?)</text>', page)]
    assert ticks and max(len(tick) for tick in ticks) <= 5, ticks
    assert "100M" in ticks  # 1,801 img/s for $0.05 an hour is 130M images per $: "100,000,000" before


def test_the_page_for_thousands_of_rows_stays_small_and_says_what_the_table_left_out() -> None:
    import pandas as pd

    rows = 6000
    summary = pd.DataFrame({
        "run_id": [f"r-{i // 6:04d}" for i in range(rows)], "name": None, "host": "localhost", "hosts": 1,
        "state": "succeeded", "model": [f"m{i % 3}" for i in range(rows)],
        "batch_size": [2 ** (4 + i % 6) for i in range(rows)],
        "train_images_per_sec": [float(100 + i % 997) for i in range(rows)],
        "price_per_hour": [1.0 + (i % 7) / 10 for i in range(rows)], "cost_usd": 1.0, "duration_s": 3600.0,
    })
    page = render_html(pd.DataFrame(), summary)
    assert len(page.encode()) < 1_500_000
    assert page.count("<tr>") <= 1001  # the header and at most TABLE_ROWS rows
    assert "first 1,000 of 6,000 rows" in page
    for name in ("throughput_vs_price", "batch_size_curves"):
        assert len(_legend(_chart(page, name))) == 10
    assert len(re.findall(r'<rect class="mark"', _chart(page, "images_per_dollar"))) == 12


def _report_of(store: Store) -> str:
    samples = samples_frame(store, sorted({r.id for r in store.list_runs()}))
    return render_html(samples, summary_frame(samples))
