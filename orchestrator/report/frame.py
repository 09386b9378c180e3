"""One frame of runs × samples, and the per-run summary built from it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.store import Store

if TYPE_CHECKING:
    import pandas as pd

RUN_COLUMNS = ["run_id", "name", "provider", "suite", "state", "created_at", "duration_s", "cost_usd"]
# Metadata keys that tell one measured configuration (a recipe) from another within a run, in display order.
# Other metadata (steps, repeat, split, …) describes how a figure was measured, not what was measured.
VARIANT_KEYS = [
    "model", "variant", "format", "weights", "phase", "data", "pipeline", "precision", "xla", "batch_size",
    "image_size", "optimizer", "learning_rate", "momentum", "dropout", "strategy", "replicas", "workers",
    "worker_index", "per_replica_batch", "backend",
]
# Curve points (one per epoch, benchmark "train_curve" and the like) are left to the samples view and charts.
CURVE_SUFFIX = "_curve"
# Columns the summary shows first, with the labels a user reads.
SUMMARY_LABELS = {
    "train_throughput.images_per_sec": "train_images_per_sec",
    "inference_throughput.images_per_sec": "inference_images_per_sec",
    "train.accuracy": "test_accuracy",
    "train_throughput.step_time_ms_p50": "train_step_ms_p50",
    "train.seconds": "train_seconds",
}


def samples_frame(store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    """Returns one row per sample (runs without samples get one row of NaN), metadata flattened to columns."""
    import pandas as pd

    if not run_ids:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "benchmark", "metric", "value", "unit"])
    marks = ",".join("?" * len(run_ids))
    runs = pd.DataFrame(
        [tuple(row) for row in store.query(
            "SELECT r.id, r.name, r.provider, r.suite, r.state, r.created_at, r.duration_s, "
            "(SELECT SUM(amount_usd) FROM costs c WHERE c.run_id = r.id) "
            f"FROM runs r WHERE r.id IN ({marks}) ORDER BY r.created_at, r.id", list(run_ids))],
        columns=RUN_COLUMNS,
    )
    runs["cost_usd"] = runs["cost_usd"].astype("float64")
    # The samples alone (their run's facts are joined once per run below, not fetched again per sample).
    rows = store.query(
        f"SELECT run_id, benchmark, metric, value, unit, metadata_json FROM samples WHERE run_id IN ({marks}) "
        "ORDER BY id", list(run_ids),
    )
    measured = pd.DataFrame([tuple(row)[:-1] for row in rows],
                            columns=["run_id", "benchmark", "metric", "value", "unit"])
    # One parse of every sample's metadata (a JSON array of the objects), then one frame of them: far cheaper
    # than a json.loads and a dict merge per row (see docs/performance.md, "Report generation").
    metadata = json.loads("[" + ",".join(row[-1] or "{}" for row in rows) + "]")
    if metadata:
        extra = pd.DataFrame.from_records(metadata, index=measured.index)
        taken = {*RUN_COLUMNS, *measured.columns}
        extra = extra.drop(columns=[c for c in extra.columns if c in taken])  # run facts win over metadata
        measured = pd.concat([measured, extra], axis=1)
    # Runs in order, each followed by its samples in order; a run without samples keeps one row of NaN.
    frame = runs.merge(measured, on="run_id", how="left", sort=False)
    for key in VARIANT_KEYS:
        if key not in frame.columns:
            frame[key] = None
        elif key in ("batch_size", "image_size", "replicas", "workers", "worker_index", "per_replica_batch") \
                and frame[key].dtype.kind == "f" and (frame[key].dropna() % 1 == 0).all():
            # A run without samples makes the column float; a batch size is still an integer.
            frame[key] = frame[key].astype("Int64")
    return frame


def summary_frame(samples: pd.DataFrame) -> pd.DataFrame:
    """Returns one row per run and recipe (the :data:`VARIANT_KEYS` the samples have), one column per metric.

    Per-epoch curve points are left out; a run that measured nothing keeps one row.
    """
    import pandas as pd

    if samples.empty:
        return pd.DataFrame(columns=RUN_COLUMNS)
    curve = samples["benchmark"].fillna("").str.endswith(CURVE_SUFFIX)
    frame = samples[~curve].copy()
    variants = [key for key in VARIANT_KEYS if frame[key].notna().any()]
    index = RUN_COLUMNS + variants
    for key in index:
        frame[key] = frame[key].astype(object).where(frame[key].notna(), "-")
    runs = frame[index].drop_duplicates()
    measured = frame[frame["metric"].notna()]
    if measured.empty:
        return runs.reset_index(drop=True)
    measured = measured.assign(column=measured["benchmark"] + "." + measured["metric"])
    wide = measured.pivot_table(index=index, columns="column", values="value", aggfunc="median").reset_index()
    wide.columns.name = None
    # Runs that measured nothing (failed early) keep a row, without variant rows that others have.
    unmeasured = runs[~runs["run_id"].isin(measured["run_id"])]
    summary = pd.concat([wide, unmeasured], ignore_index=True) if not unmeasured.empty else wide
    summary = summary.rename(columns=SUMMARY_LABELS)
    first = [c for c in [*RUN_COLUMNS, *VARIANT_KEYS, *SUMMARY_LABELS.values()] if c in summary.columns]
    rest = sorted(c for c in summary.columns if c not in first)
    order = {run_id: i for i, run_id in enumerate(dict.fromkeys(samples["run_id"]))}
    summary = summary.sort_values("run_id", key=lambda s: s.map(order), kind="stable")
    return summary[first + rest].replace({"-": None}).reset_index(drop=True)
