"""One frame of runs × samples, the summary built from it (one row per run, recipe and host), and its prices.

A run over several machines has a row per machine (its ``host``, e.g. ``box0``) and, per recipe, a total row
(``host`` "all 2") that sums the machines' throughput; a run on one machine keeps one row per recipe.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.store import Store

if TYPE_CHECKING:
    import pandas as pd

RUN_COLUMNS = ["run_id", "name", "provider", "suite", "state", "created_at", "duration_s", "cost_usd"]
# The machine a sample came from (its inventory name, "localhost", or a cloud machine's id); None in a store
# written before samples kept it, which reads as one unnamed machine.
HOST = "host"
# How many machines a summary row stands for: 1 for a machine's own row, N for a run's total over N machines.
HOSTS = "hosts"
# GPUs the row's figures were measured on (the samples' ``gpus`` metadata; a total row sums its machines').
GPUS = "gpus"
# Metadata keys that tell one measured configuration (a recipe) from another within a run, in display order.
# Other metadata (steps, repeat, split, …) describes how a figure was measured, not what was measured.
VARIANT_KEYS = [
    "model", "variant", "format", "weights", "phase", "data", "pipeline", "precision", "xla", "batch_size",
    "image_size", "optimizer", "learning_rate", "momentum", "dropout", "strategy", "replicas", "workers",
    "worker_index", "per_replica_batch", "backend",
]
# Curve points (one per epoch, benchmark "train_curve" and the like) are left to the samples view and charts.
CURVE_SUFFIX = "_curve"
# Throughput metrics (images/s) add up over a run's machines; every other metric is a median over them.
THROUGHPUT_METRIC = "images_per_sec"
# A benchmark whose images/s is already per GPU ("train_throughput_per_gpu"): a total over machines leaves it
# blank, and the per-GPU metric divides the total by the GPUs of all machines instead.
PER_GPU_SUFFIX = "_per_gpu"
# Columns the summary shows first, with the labels a user reads.
SUMMARY_LABELS = {
    "train_throughput.images_per_sec": "train_images_per_sec",
    "inference_throughput.images_per_sec": "inference_images_per_sec",
    "train.accuracy": "test_accuracy",
    "train_throughput.step_time_ms_p50": "train_step_ms_p50",
    "train.seconds": "train_seconds",
}
_MISSING = "-"  # stands in for a missing key while grouping (pandas drops NaN keys)


def samples_frame(store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    """Returns one row per sample (runs without samples get one row of NaN), metadata flattened to columns.

    Columns: the run's facts (:data:`RUN_COLUMNS`), the sample's :data:`HOST`, benchmark, metric, value, unit,
    then its metadata.
    """
    import pandas as pd

    if not run_ids:
        return pd.DataFrame(columns=[*RUN_COLUMNS, HOST, "benchmark", "metric", "value", "unit"])
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
        f"SELECT run_id, host, benchmark, metric, value, unit, metadata_json FROM samples WHERE run_id IN ({marks}) "
        "ORDER BY id", list(run_ids),
    )
    measured = pd.DataFrame([tuple(row)[:-1] for row in rows],
                            columns=["run_id", HOST, "benchmark", "metric", "value", "unit"])
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
    """Returns one row per run, recipe (the :data:`VARIANT_KEYS` the samples have) and host; one column per metric.

    A run whose samples came from more than one host also gets, per recipe, a total row after its hosts' rows:
    ``host`` "all N", ``hosts`` N, images/s summed over the hosts that measured the recipe (the run's
    throughput), ``gpus`` summed, other metrics (accuracy, step times, seconds) the median over those hosts.
    Every other row has ``hosts`` 1. Per-epoch curve points are left out; a run that measured nothing keeps
    one row.
    """
    import pandas as pd

    if samples.empty:
        return pd.DataFrame(columns=[*RUN_COLUMNS, HOST, HOSTS])
    curve = samples["benchmark"].fillna("").str.endswith(CURVE_SUFFIX)
    frame = samples[~curve].copy()
    if HOST not in frame.columns:
        frame[HOST] = None
    variants = [key for key in VARIANT_KEYS if frame[key].notna().any()]
    recipe = RUN_COLUMNS + variants
    index = recipe + [HOST]  # host last: a recipe's hosts sit together
    for key in index:
        frame[key] = frame[key].astype(object).where(frame[key].notna(), _MISSING)
    # Runs that measured nothing have one row each, of NaN (a sample always has a metric).
    runs = frame.loc[frame["metric"].isna(), index].drop_duplicates()
    measured = frame[frame["metric"].notna()]
    if measured.empty:
        return runs.assign(hosts=1).replace({_MISSING: None}).reset_index(drop=True)
    measured = measured.assign(column=measured["benchmark"] + "." + measured["metric"])
    wide = _pivot(measured, index)
    wide[HOSTS] = 1
    # Runs that measured nothing (failed early) keep a row, without variant rows that others have.
    unmeasured = runs[~runs["run_id"].isin(measured["run_id"])].assign(hosts=1)
    parts = [wide, _totals(wide, recipe), unmeasured]
    summary = pd.concat([part for part in parts if not part.empty], ignore_index=True)
    summary = _in_order(summary, recipe, list(dict.fromkeys(samples["run_id"])))
    summary = summary.rename(columns=SUMMARY_LABELS)
    first = [c for c in [*RUN_COLUMNS, HOST, HOSTS, *VARIANT_KEYS, *SUMMARY_LABELS.values(), GPUS]
             if c in summary.columns]
    rest = sorted(c for c in summary.columns if c not in first)
    return summary[first + rest].replace({_MISSING: None}).reset_index(drop=True)


def _pivot(measured: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Returns one row per ``index`` group: the median of each benchmark.metric and, when the samples say, the
    most GPUs a figure of the group was measured on."""
    import pandas as pd

    if GPUS not in measured.columns or measured[GPUS].isna().all():
        wide = measured.pivot_table(index=index, columns="column", values="value", aggfunc="median")
        wide.columns.name = None
        return wide.reset_index()
    # One grouping for both: the figures' medians and the GPUs behind them.
    measured = measured.assign(gpus=pd.to_numeric(measured[GPUS], errors="coerce"))
    both = measured.pivot_table(index=index, columns="column", values=["value", GPUS],
                                aggfunc={"value": "median", GPUS: "max"})
    wide = pd.DataFrame(both["value"])
    wide.columns.name = None
    return wide.assign(gpus=pd.DataFrame(both[GPUS]).max(axis=1)).reset_index()


def _totals(wide: pd.DataFrame, recipe: list[str]) -> pd.DataFrame:
    """Returns a total row per run and recipe of the runs with more than one host (none for the others)."""
    import pandas as pd

    host_count = wide.groupby("run_id", sort=False)[HOST].transform("nunique")
    several = wide[host_count > 1]
    if several.empty:
        return pd.DataFrame(columns=wide.columns)
    figures = [c for c in several.columns if c not in (*recipe, HOST, HOSTS, GPUS)]
    summed = [c for c in figures if c.endswith("." + THROUGHPUT_METRIC)
              and not c.rpartition(".")[0].endswith(PER_GPU_SUFFIX)]
    medians = [c for c in figures if c not in summed and not c.rpartition(".")[0].endswith(PER_GPU_SUFFIX)]
    grouped = several.groupby(recipe, sort=False)
    parts = [grouped[medians].median(), grouped[summed].sum(min_count=1)]
    if GPUS in several.columns:
        parts.append(grouped[[GPUS]].sum(min_count=1))
    totals = pd.concat(parts, axis=1).reset_index()
    totals[HOSTS] = totals["run_id"].map(several.groupby("run_id")[HOST].nunique())
    totals[HOST] = "all " + totals[HOSTS].astype(str)
    return totals


def _in_order(summary: pd.DataFrame, recipe: list[str], run_order: list[str]) -> pd.DataFrame:
    """Sorts rows by run (first seen first), then recipe (as pivoted), its hosts' rows before its total."""
    import numpy as np

    position = {run_id: i for i, run_id in enumerate(run_order)}
    runs = summary["run_id"].map(position).to_numpy()
    recipes = summary.groupby(recipe, sort=False, dropna=False).ngroup().to_numpy()
    total = (summary[HOSTS] > 1).to_numpy()
    return summary.iloc[np.lexsort((total, recipes, runs))]


def stands_for_run(summary: pd.DataFrame) -> pd.Series:
    """Returns, per summary row, whether it stands for its whole run: a multi-host run's total rows, and every
    row of a run on one host (or of a frame without hosts, such as published references)."""
    import pandas as pd

    if HOSTS not in summary.columns or "run_id" not in summary.columns:
        return pd.Series(True, index=summary.index)
    hosts = pd.to_numeric(summary[HOSTS], errors="coerce").fillna(1)
    return hosts >= hosts.groupby(summary["run_id"]).transform("max")


def priced(summary: pd.DataFrame, machines: pd.DataFrame) -> pd.DataFrame:
    """Returns the summary with each row's ``price_per_hour`` (USD per hour) and its ``cost_usd``.

    A host's row of a multi-host run: its own machine's price (billed amount over billed hours) and cost. A total
    row: the sum of its hosts' machines' prices (blank when one is unknown), and the run's whole cost. A run on
    one host: its machine's price (the run's, when no machine is named after the host, as in old stores), and
    the run's whole cost. The run's whole cost counts every machine it paid for, a failed launch attempt's too.

    Args:
        summary: a :func:`summary_frame`.
        machines: one row per run and machine: ``run_id``, ``machine_id``, ``amount_usd`` and ``billed_seconds``
            (summed over the machine's cost lines).
    """
    import numpy as np
    import pandas as pd

    if summary.empty or "run_id" not in summary.columns:
        return summary.assign(price_per_hour=pd.Series(dtype="float64"))

    def per_hour(amount: pd.Series, billed_seconds: pd.Series) -> pd.Series:
        hours = billed_seconds.astype("float64") / 3600.0
        return (amount.astype("float64") / hours.where(hours > 0)).astype("float64")

    own = machines.set_index(["run_id", "machine_id"])
    own = own.assign(price=per_hour(own["amount_usd"], own["billed_seconds"]))
    whole = machines.groupby("run_id")[["amount_usd", "billed_seconds"]].sum()
    run_price = summary["run_id"].map(per_hour(whole["amount_usd"], whole["billed_seconds"])).to_numpy(
        dtype="float64")
    host = summary[HOST] if HOST in summary.columns else pd.Series(None, index=summary.index, dtype=object)
    hosts = pd.to_numeric(summary[HOSTS], errors="coerce").fillna(1) if HOSTS in summary.columns \
        else pd.Series(1.0, index=summary.index)
    key = pd.MultiIndex.from_arrays([summary["run_id"], host])
    own_price = own["price"].reindex(key).to_numpy(dtype="float64")
    own_cost = own["amount_usd"].reindex(key).to_numpy(dtype="float64")
    total = (hosts > 1).to_numpy()
    several = (hosts.groupby(summary["run_id"]).transform("max") > 1).to_numpy()
    # A total's price: its run's hosts' prices summed, each host once (unknown when one is unknown).
    host_rows = pd.DataFrame({"run_id": summary["run_id"], "host": host, "price": own_price})[several & ~total]
    host_rows = host_rows.drop_duplicates(["run_id", "host"])
    unknown = host_rows["price"].isna().groupby(host_rows["run_id"]).any()
    sums = host_rows.groupby("run_id")["price"].sum().where(~unknown)
    total_price = summary["run_id"].map(sums).to_numpy(dtype="float64")
    single_price = np.where(np.isnan(own_price), run_price, own_price)
    price = np.where(total, total_price, np.where(several, own_price, single_price))
    cost = np.where(several & ~total, own_cost, pd.to_numeric(summary["cost_usd"], errors="coerce").to_numpy())
    return summary.assign(price_per_hour=price, cost_usd=cost)
