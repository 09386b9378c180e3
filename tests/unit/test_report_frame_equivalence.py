"""The frames read the store in bulk (issue 11) and give what the frame builder gave before, cell for cell.

The reference below is the builder as it was before: one ``json.loads`` of every sample's metadata, a frame of
every sample, and the summary pivoted from it. The stores hold what makes that builder's output hard to match:
several hosts, GPUs, curve points, runs without samples, metadata keys that some samples lack, numbers that
pandas makes floats, values that only equal each other loosely (1, 1.0, True), JSON null and NaN, a host named
"-" and a host that an old store left NULL, names holding the characters the bulk read splits on.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from orchestrator import api
from orchestrator.cost import CostLine
from orchestrator.report.frame import (
    CURVE_SUFFIX,
    GPUS,
    HOST,
    HOSTS,
    RUN_COLUMNS,
    SUMMARY_LABELS,
    VARIANT_KEYS,
    _in_order,
    _totals,
    frames,
    samples_frame,
    summary_frame,
)
from orchestrator.report.html import render_html
from orchestrator.store import Store
from tests.store_sql import sql

_MISSING = "-"


def _reference_samples(store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    """The samples frame as it was built before issue 11."""
    if not run_ids:
        return pd.DataFrame(columns=[*RUN_COLUMNS, HOST, "benchmark", "metric", "value", "unit"])
    marks = ",".join("?" * len(run_ids))
    runs = pd.DataFrame(
        [tuple(row) for row in sql(store,
            "SELECT r.id, r.name, r.provider, r.suite, r.state, r.created_at, r.duration_s, "
            "(SELECT SUM(amount_usd) FROM costs c WHERE c.run_id = r.id) "
            f"FROM runs r WHERE r.id IN ({marks}) ORDER BY r.created_at, r.id", list(run_ids))],
        columns=RUN_COLUMNS,
    )
    runs["cost_usd"] = runs["cost_usd"].astype("float64")
    rows = sql(store,
        f"SELECT run_id, host, benchmark, metric, value, unit, metadata_json FROM samples WHERE run_id IN ({marks}) "
        "ORDER BY id", list(run_ids),
    )
    measured = pd.DataFrame([tuple(row)[:-1] for row in rows],
                            columns=["run_id", HOST, "benchmark", "metric", "value", "unit"])
    metadata = json.loads("[" + ",".join(row[-1] or "{}" for row in rows) + "]")
    if metadata:
        extra = pd.DataFrame.from_records(metadata, index=measured.index)
        taken = {*RUN_COLUMNS, *measured.columns}
        extra = extra.drop(columns=[c for c in extra.columns if c in taken])
        measured = pd.concat([measured, extra], axis=1)
    frame = runs.merge(measured, on="run_id", how="left", sort=False)
    for key in VARIANT_KEYS:
        if key not in frame.columns:
            frame[key] = None
        elif key in ("batch_size", "image_size", "replicas", "workers", "worker_index", "per_replica_batch") \
                and frame[key].dtype.kind == "f" and (frame[key].dropna() % 1 == 0).all():
            frame[key] = frame[key].astype("Int64")
    return frame


def _reference_summary(samples: pd.DataFrame) -> pd.DataFrame:
    """The summary as it was built before issue 11: pivoted from the frame of every sample."""
    if samples.empty:
        return pd.DataFrame(columns=[*RUN_COLUMNS, HOST, HOSTS])
    curve = samples["benchmark"].fillna("").str.endswith(CURVE_SUFFIX)
    frame = samples[~curve].copy()
    if HOST not in frame.columns:
        frame[HOST] = None
    variants = [key for key in VARIANT_KEYS if frame[key].notna().any()]
    recipe = RUN_COLUMNS + variants
    index = recipe + [HOST]
    for key in index:
        frame[key] = frame[key].astype(object).where(frame[key].notna(), _MISSING)
    runs = frame.loc[frame["metric"].isna(), index].drop_duplicates()
    measured = frame[frame["metric"].notna()]
    if measured.empty:
        return runs.assign(hosts=1).replace({_MISSING: None}).reset_index(drop=True)
    measured = measured.assign(column=measured["benchmark"] + "." + measured["metric"])
    if GPUS not in measured.columns or measured[GPUS].isna().all():
        wide = measured.pivot_table(index=index, columns="column", values="value", aggfunc="median")
        wide.columns.name = None
        wide = wide.reset_index()
    else:
        measured = measured.assign(gpus=pd.to_numeric(measured[GPUS], errors="coerce"))
        both = measured.pivot_table(index=index, columns="column", values=["value", GPUS],
                                    aggfunc={"value": "median", GPUS: "max"})
        wide = pd.DataFrame(both["value"])
        wide.columns.name = None
        wide = wide.assign(gpus=pd.DataFrame(both[GPUS]).max(axis=1)).reset_index()
    wide[HOSTS] = 1
    unmeasured = runs[~runs["run_id"].isin(measured["run_id"])].assign(hosts=1)
    parts = [wide, _totals(wide, recipe), unmeasured]
    summary = pd.concat([part for part in parts if not part.empty], ignore_index=True)
    summary = _in_order(summary, recipe, list(dict.fromkeys(samples["run_id"])))
    summary = summary.rename(columns=SUMMARY_LABELS)
    first = [c for c in [*RUN_COLUMNS, HOST, HOSTS, *VARIANT_KEYS, *SUMMARY_LABELS.values(), GPUS]
             if c in summary.columns]
    rest = sorted(c for c in summary.columns if c not in first)
    return summary[first + rest].replace({_MISSING: None}).reset_index(drop=True)


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal cell for cell, dtypes included, and in object columns each value of the same Python type (a batch
    size of 64 is not one of 64.0, though they compare equal)."""
    pd.testing.assert_frame_equal(got, expected)
    for column in expected.columns:
        if expected[column].dtype == object:
            assert [type(v) for v in got[column]] == [type(v) for v in expected[column]], column


def _sample(benchmark: str, metric: str, value: float, /, **metadata: Any) -> dict[str, Any]:
    return {"benchmark": benchmark, "metric": metric, "value": value, "unit": "u", "metadata": metadata}


def _record(store: Store, run_id: str, results: dict[str, list[dict[str, Any]]], cost: float = 1.0,
            name: str | None = None) -> None:
    store.create_run(run_id, provider="rented", suite="throughput", name=name, spec={})
    documents = {host: {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}
                 for host, samples in results.items()}
    store.finish_run(run_id, state="succeeded", duration_s=60.0, error=None, log_tail=None, results=documents,
                     costs=[CostLine(component="compute", seconds=60.0, billed_seconds=60.0, price_per_hour=cost * 60,
                                     amount_usd=cost, rule="per_second", machine_id=host)
                            for host in results])


def _mixed_store(home: Path) -> list[str]:
    """Runs that exercise every rule of the samples frame's columns and the summary's groups."""
    with Store(home) as store:
        recipe = {"model": "cnn", "batch_size": 64, "precision": "float32"}
        _record(store, "r-a", {
            host: [
                _sample("train_throughput", "images_per_sec", speed, gpus=gpus, **recipe),
                _sample("train_throughput", "images_per_sec", speed * 1.5, gpus=gpus, **recipe),
                _sample("train_throughput_per_gpu", "images_per_sec", speed / gpus, gpus=gpus, **recipe),
                _sample("train", "accuracy", 0.9, gpus=gpus, **recipe),
                *(_sample("train_curve", "accuracy", 0.5 + epoch / 10, epoch=epoch, elapsed_s=epoch * 2.5, **recipe)
                  for epoch in range(3)),
            ]
            for host, speed, gpus in (("box0", 100.0, 1), ("box1", 300.0, 2))
        }, name="two boxes")
        store.create_run("r-b", provider="local", suite="smoke", name=None, spec={})  # never measured anything
        _record(store, "r-c", {"localhost": [_sample("train_curve", "accuracy", 0.7, elapsed_s=1.0)]})
        _record(store, "r-d", {"it's box": [  # a name with a quote
            _sample("train_throughput", "images_per_sec", 10.0, model="m", batch_size=32, xla=True, momentum=0,
                    learning_rate=1),
            _sample("train_throughput", "images_per_sec", 12.0, model="m", xla=False, learning_rate=0.5),
            _sample("train_throughput", "images_per_sec", 14.0, model="m", xla=1, learning_rate=1.0),
            _sample("train_throughput", "images_per_sec", float("inf"), model="m", precision=None),
            _sample("train_throughput", "images_per_sec", 3.0, model="m", dropout=float("nan"), gpus="2"),
            _sample("train_throughput", "images_per_sec", 4.0, model="-", name="not the run's", value=7),
            _sample("train", "accuracy", -0.0, model="résumé-net", options={"kind": "mirrored"}),
            _sample("train", "accuracy", 0.0, model="résumé-net", options={"kind": "mirrored"}),
        ]})
        _record(store, "r-e", {"-": [  # a host named like a missing one
            _sample("deploy", metric, value, variant=variant, format=form, model="cnn")
            for variant, form in (("float32", "tflite"), ("int8", "tflite"))
            for metric, value in (("model_bytes", 1e6), ("latency_ms_p50", 0.02), ("accuracy", 0.97))
        ]})
        ids = [run.id for run in store.list_runs()]
    # A store written before samples kept their host has it NULL.
    with sqlite3.connect(home / "state.db") as db:
        db.execute("INSERT INTO samples (run_id, host, benchmark, metric, value, unit, metadata_json) "
                   "VALUES ('r-e', NULL, 'deploy', 'accuracy', 0.5, '', '{\"variant\": \"float32\"}')")
    return ids


def _random_store(home: Path, seed: int) -> list[str]:
    """Random runs over a small vocabulary, so that groups, missing keys and loosely equal values collide."""
    rng = random.Random(seed)
    values: dict[str, list[Any]] = {
        "model": ["a", "b", None], "batch_size": [16, 32, 32.0, None], "xla": [True, False, 1, 0],
        "learning_rate": [1, 0.1, 1.0], "precision": ["float32", "mixed_float16"], "gpus": [1, 2, 2.0, None],
        "steps": [10, 20], "elapsed_s": [0.5, 1.5],
    }
    with Store(home) as store:
        for r in range(rng.randint(3, 7)):
            run_id = f"r-{seed}-{r}"
            if rng.random() < 0.2:
                store.create_run(run_id, provider="local", suite="smoke", name=None, spec={})
                continue
            hosts = rng.sample(["box0", "box1", "localhost"], rng.randint(1, 2))
            results = {
                host: [
                    _sample(rng.choice(["train_throughput", "train", "train_curve", "inference_throughput"]),
                            rng.choice(["images_per_sec", "accuracy"]),
                            rng.choice([1.0, 2.0, 3.5, rng.random() * 1000]),
                            **{key: rng.choice(choices) for key, choices in values.items() if rng.random() < 0.7})
                    for _ in range(rng.randint(1, 25))
                ]
                for host in hosts
            }
            _record(store, run_id, results, cost=rng.choice([0.5, 1.0]), name=rng.choice([None, "named"]))
        return [run.id for run in store.list_runs()]


def _assert_frames_match_the_reference(home: Path, run_ids: list[str]) -> None:
    with Store(home) as store:
        expected_samples = _reference_samples(store, run_ids)
        samples, summary = frames(store, run_ids)
        _assert_same(samples, expected_samples)
        _assert_same(samples_frame(store, run_ids), expected_samples)
        _assert_same(summary, _reference_summary(expected_samples))
        _assert_same(summary_frame(samples), summary)
        # The summary view's lean read: the same summary, and the same HTML report from its curve points alone.
        curves, lean_summary = frames(store, run_ids, curves_only=True)
        _assert_same(lean_summary, summary)
        assert curves["benchmark"].dropna().str.endswith(CURVE_SUFFIX).all()
        assert render_html(curves, lean_summary) == render_html(samples, summary)


def test_frames_match_the_reference_on_mixed_runs(tmp_path: Path) -> None:
    run_ids = _mixed_store(tmp_path)
    _assert_frames_match_the_reference(tmp_path, run_ids)
    _assert_frames_match_the_reference(tmp_path, ["r-d"])
    _assert_frames_match_the_reference(tmp_path, ["r-b", "r-c"])


@pytest.mark.parametrize("seed", range(6))
def test_frames_match_the_reference_on_random_runs(tmp_path: Path, seed: int) -> None:
    _assert_frames_match_the_reference(tmp_path, _random_store(tmp_path, seed))


def test_whole_numbers_stay_whole_unless_a_run_without_samples_makes_them_float(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        _record(store, "r-1", {host: [
            _sample("train_throughput", "images_per_sec", speed + step, model="a", gpus=gpus, momentum=0, xla=True,
                    steps=step)
            for step in (10, 20, 30)
        ] for host, speed, gpus in (("box0", 100.0, 1), ("box1", 200.0, 4))})
        store.create_run("r-2", provider="local", suite="smoke", name=None, spec={})
    _assert_frames_match_the_reference(tmp_path, ["r-1"])
    _assert_frames_match_the_reference(tmp_path, ["r-1", "r-2"])


@pytest.mark.parametrize("separator", ["\x1e", "\x1f"])
def test_names_holding_the_bulk_reads_separators_are_read_one_row_each(tmp_path: Path, separator: str) -> None:
    with Store(tmp_path) as store:
        _record(store, "r-1", {f"box{separator}0": [
            _sample(f"train{separator}throughput", "images_per_sec", 5.0, model="a"),
            _sample("train", f"accuracy{separator}", 0.5, model=f"a{separator}"),
        ]})
        _record(store, "r-2", {"box": [_sample("train_throughput", "images_per_sec", 6.0, model="a")]})
    _assert_frames_match_the_reference(tmp_path, ["r-1", "r-2"])


def test_a_store_without_runs_gives_empty_frames(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        samples, summary = frames(store, [])
        _assert_same(samples, _reference_samples(store, []))
        _assert_same(summary, _reference_summary(samples))


def test_the_summary_view_reports_the_same_summary_with_fewer_samples(tmp_path: Path) -> None:
    _mixed_store(tmp_path)
    samples, summary = api.report_frames_derived(home=tmp_path)
    lean_samples, lean_summary = api.report_frames_derived(home=tmp_path, view="summary")
    _assert_same(lean_summary, summary)
    assert len(lean_samples) < len(samples)
    assert set(lean_samples["run_id"]) == set(samples["run_id"])
