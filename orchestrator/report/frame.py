"""One frame of runs × samples, the summary built from it (one row per run, recipe and host), and its prices.

A run over several machines has a row per machine (its ``host``, e.g. ``box0``) and, per recipe, a total row
(``host`` "all 2") that sums the machines' throughput; a run on one machine keeps one row per recipe.

Both frames come from one bulk read of the samples (:func:`frames`, :mod:`orchestrator.report.fetch`): their
metadata is parsed once per distinct text, and the summary takes one median per run and group of the samples'
codes, so a report over a million samples needs neither a million parses nor, for the summary alone, a frame of a
million rows.

pandas and numpy (about a second of imports) are imported inside the functions that use them: `orchestrate status`
imports this module (through :mod:`orchestrator.api`) and builds no frame.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.report.fetch import Fetched, fetch
from orchestrator.store import Store

if TYPE_CHECKING:
    import numpy as np
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
# One repeat's figure (metric "images_per_sec_repeat", metadata ``repeat_index``) is left to the samples view too:
# the summary has the payload's median, slowest, fastest and spread of the repeats instead.
REPEAT_SUFFIX = "_repeat"
# The repeats' slowest, fastest and coefficient of variation: of one machine's repeats, so a total row over
# several machines leaves them blank (its machines' repeats were not timed together, so no sum of them is a
# repeat of the whole run).
SPREAD_METRICS = ("images_per_sec_min", "images_per_sec_max", "images_per_sec_cv")
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
    "train_throughput.images_per_sec_cv": "train_images_per_sec_cv",
    "train_throughput.images_per_sec_min": "train_images_per_sec_min",
    "train_throughput.images_per_sec_max": "train_images_per_sec_max",
    "inference_throughput.images_per_sec_cv": "inference_images_per_sec_cv",
    "inference_throughput.images_per_sec_min": "inference_images_per_sec_min",
    "inference_throughput.images_per_sec_max": "inference_images_per_sec_max",
}
_MISSING = "-"  # stands in for a missing key while grouping (pandas drops NaN keys)
# Variant keys that count things: a column of them made float by a missing value is still one of integers.
_INTEGER_KEYS = ("batch_size", "image_size", "replicas", "workers", "worker_index", "per_replica_batch")
# The samples' own columns, before their metadata's.
_SAMPLE_COLUMNS = ["run_id", HOST, "benchmark", "metric", "value", "unit"]


def frames(store: Store, run_ids: Sequence[str], *, curves_only: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns (samples, summary) from one read of the store: what ``samples_frame`` and ``summary_frame`` of it
    give, the summary built without a frame of every sample (one median per group of the samples' codes).

    Args:
        store: the run store.
        run_ids: the runs, in any order (the frames keep the runs' order: oldest first).
        curves_only: keep only the per-epoch curve points (benchmarks ending in ``_curve``) in the samples frame,
            all that the summary report's HTML charts read from it; every run still has its rows in the summary.
    """
    import numpy as np
    import pandas as pd

    if not run_ids:
        return pd.DataFrame(columns=[*RUN_COLUMNS, *_SAMPLE_COLUMNS[1:]]), summary_frame(pd.DataFrame())
    runs = _runs_frame(store, run_ids)
    fetched = fetch(store, list(runs["run_id"]))
    keys = _key_frame(fetched)
    rows = None
    if curves_only:
        curve = keys.frame["benchmark"].fillna("").str.endswith(CURVE_SUFFIX).to_numpy(dtype=bool)
        rows = np.flatnonzero(curve[keys.row[fetched.key]])
    return _samples(runs, fetched, keys, rows), _summary_of_keys(runs, fetched, keys)


def samples_frame(store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    """Returns one row per sample (runs without samples get one row of NaN), metadata flattened to columns.

    Columns: the run's facts (:data:`RUN_COLUMNS`), the sample's :data:`HOST`, benchmark, metric, value, unit,
    then its metadata.
    """
    import pandas as pd

    if not run_ids:
        return pd.DataFrame(columns=[*RUN_COLUMNS, *_SAMPLE_COLUMNS[1:]])
    runs = _runs_frame(store, run_ids)
    fetched = fetch(store, list(runs["run_id"]))
    return _samples(runs, fetched, _key_frame(fetched), None)


def _runs_frame(store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    """Returns the runs' facts (:data:`RUN_COLUMNS`), oldest first."""
    import pandas as pd

    runs = pd.DataFrame([astuple(facts) for facts in store.run_facts(run_ids)], columns=RUN_COLUMNS)
    runs["cost_usd"] = runs["cost_usd"].astype("float64")
    return runs


@dataclass
class _Keys:
    """One row per distinct sample key: the columns (host … unit, then the metadata) a sample of it has in the
    samples frame, typed as the frame of every sample types them."""

    frame: pd.DataFrame  # rows in the order the keys are first met by sample id (the metadata columns' order)
    row: np.ndarray  # each key's row in ``frame``


def _key_frame(fetched: Fetched) -> _Keys:
    """Builds the key rows: a column's type depends only on the values it holds, not on how often each occurs."""
    import numpy as np
    import pandas as pd

    first_id = np.full(len(fetched.keys), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_id, fetched.key, fetched.sample_id)
    order = np.argsort(first_id, kind="stable")
    row = np.empty(len(order), dtype=np.int64)
    row[order] = np.arange(len(order))
    keys = [fetched.keys[k] for k in order]
    frame = pd.DataFrame([key[:4] for key in keys], columns=[HOST, "benchmark", "metric", "unit"])
    # One parse of the distinct metadata (a JSON array of the objects), then one frame of them.
    metadata = json.loads("[" + ",".join(key[4] or "{}" for key in keys) + "]")
    if metadata:
        extra = pd.DataFrame.from_records(metadata)
        taken = {*RUN_COLUMNS, *_SAMPLE_COLUMNS}
        extra = extra.drop(columns=[c for c in extra.columns if c in taken])  # run facts win over metadata
        frame = pd.concat([frame, extra], axis=1)
    return _Keys(frame, row)


def _samples(runs: pd.DataFrame, fetched: Fetched, keys: _Keys, rows: np.ndarray | None) -> pd.DataFrame:
    """Returns the samples frame (of the samples at ``rows`` of ``fetched``; every sample when None)."""
    import pandas as pd

    if len(fetched.value) == 0:
        measured = pd.DataFrame([], columns=_SAMPLE_COLUMNS)
    else:
        run, key, value = fetched.run, fetched.key, fetched.value
        if rows is not None:
            run, key, value = run[rows], key[rows], value[rows]
        measured = keys.frame.take(keys.row[key]).reset_index(drop=True)
        measured.insert(0, "run_id", runs["run_id"].take(run).reset_index(drop=True))
        measured.insert(4, "value", value)
    # Runs in order, each followed by its samples in order; a run without samples keeps one row of NaN.
    return _with_variant_columns(runs.merge(measured, on="run_id", how="left", sort=False))


def _with_variant_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Gives the frame every :data:`VARIANT_KEYS` column, counts as integers."""
    for key in VARIANT_KEYS:
        if key not in frame.columns:
            frame[key] = None
        elif key in _INTEGER_KEYS and frame[key].dtype.kind == "f" and (frame[key].dropna() % 1 == 0).all():
            # A run without samples makes the column float; a batch size is still an integer.
            frame[key] = frame[key].astype("Int64")
    return frame


def summary_frame(samples: pd.DataFrame) -> pd.DataFrame:
    """Returns one row per run, recipe (the :data:`VARIANT_KEYS` the samples have) and host; one column per metric.

    A run whose samples came from more than one host also gets, per recipe, a total row after its hosts' rows:
    ``host`` "all N", ``hosts`` N, images/s summed over the hosts that measured the recipe (the run's
    throughput), ``gpus`` summed, the repeats' slowest, fastest and spread (``images_per_sec_min``, ``_max``,
    ``_cv``) blank, other metrics (accuracy, step times, seconds) the median over those hosts. Every other row
    has ``hosts`` 1. Per-epoch curve points and each repeat's own figure (``images_per_sec_repeat``) are left
    out; a run that measured nothing keeps one row.
    """
    import pandas as pd

    if samples.empty:
        return pd.DataFrame(columns=[*RUN_COLUMNS, HOST, HOSTS])
    frame = samples[~_left_to_samples(samples)].copy()
    if HOST not in frame.columns:
        frame[HOST] = None
    variants = [key for key in VARIANT_KEYS if frame[key].notna().any()]
    recipe = RUN_COLUMNS + variants
    for key in recipe + [HOST]:
        frame[key] = _filled(frame[key])
    # Runs that measured nothing have one row each, of NaN (a sample always has a metric).
    runs = frame.loc[frame["metric"].isna(), recipe + [HOST]].drop_duplicates()
    measured = frame[frame["metric"].notna()]
    with_gpus = GPUS in measured.columns and bool(measured[GPUS].notna().any())
    measured = measured.assign(column=measured["benchmark"] + "." + measured["metric"])
    return _summary(runs, measured, recipe, list(dict.fromkeys(samples["run_id"])), with_gpus)


def _left_to_samples(samples: pd.DataFrame) -> pd.Series:
    """Returns, per sample, whether the summary leaves it to the samples view: a curve point (benchmark ending in
    :data:`CURVE_SUFFIX`) or one repeat's figure (metric ending in :data:`REPEAT_SUFFIX`)."""
    curve = samples["benchmark"].fillna("").astype(str).str.endswith(CURVE_SUFFIX)
    repeat = samples["metric"].fillna("").astype(str).str.endswith(REPEAT_SUFFIX)
    return curve | repeat


def _filled(column: pd.Series) -> pd.Series:
    """The column as objects, a missing value as :data:`_MISSING`."""
    return column.astype(object).where(column.notna(), _MISSING)


def _summary_of_keys(runs: pd.DataFrame, fetched: Fetched, keys: _Keys) -> pd.DataFrame:
    """Returns what ``summary_frame`` gives for the samples frame of ``fetched``, from its key rows and values.

    Each key row (typed as in the samples frame, a run without samples included) belongs to a recipe and host
    group as pandas would group it: each column's values are coded in the order the samples frame meets them
    (so equal values share a code, and a group shows the first one met). A group's figure is the median of its
    samples' values per run, its GPUs the most of its samples'; ``_summary`` then gets one row per group.
    """
    import numpy as np
    import pandas as pd

    has_samples = np.zeros(len(runs), dtype=bool)
    has_samples[fetched.run] = True
    # With the row of NaN that a run without samples adds to the samples frame (an integer column turns float).
    typed = keys.frame.reindex(range(len(keys.frame) + (0 if has_samples.all() else 1)))
    typed = _with_variant_columns(typed).iloc[:len(keys.frame)]
    # The key rows of measured samples (not curve points), in the order the samples frame first meets them.
    sample_row = keys.row[fetched.key]
    first = np.full(len(typed), len(sample_row), dtype=np.int64)
    np.minimum.at(first, sample_row, np.arange(len(sample_row), dtype=np.int64))
    level_rows = np.flatnonzero(~_left_to_samples(typed).to_numpy(dtype=bool))
    level_rows = level_rows[np.argsort(first[level_rows], kind="stable")]
    level = typed.iloc[level_rows].reset_index(drop=True)
    variants = [key for key in VARIANT_KEYS if level[key].notna().any()]
    recipe = RUN_COLUMNS + variants
    index = [*variants, HOST]
    shown: dict[str, np.ndarray] = {}  # per key column: each level row's value as pandas groups it
    codes = []
    for key in [*index, "column"]:
        values = (level["benchmark"] + "." + level["metric"] if key == "column" else _filled(level[key]))
        code, uniques = pd.factorize(values.to_numpy(dtype=object))
        shown[key] = np.asarray(uniques, dtype=object)[code]
        codes.append(code)
    group_of_level = pd.MultiIndex.from_arrays(codes).factorize()[0] if len(level) else np.zeros(0, np.int64)
    groups = int(group_of_level.max()) + 1 if len(level) else 0
    group_of_row = np.full(len(typed), -1, dtype=np.int64)
    group_of_row[level_rows] = group_of_level
    # Each measured sample's (run, group), and per such pair the median of its values.
    sample_group = group_of_row[sample_row]
    measured_samples = np.flatnonzero(sample_group >= 0)
    pair = fetched.run[measured_samples] * max(groups, 1) + sample_group[measured_samples]
    pair_code, pairs = pd.factorize(pair)
    by_pair = pd.Series(fetched.value[measured_samples]).groupby(pair_code)
    filled_runs = pd.DataFrame({key: _filled(runs[key]) for key in RUN_COLUMNS})
    run_of_pair, group_of_pair = pairs // max(groups, 1), pairs % max(groups, 1)
    first_of_group = np.unique(group_of_level, return_index=True)[1]
    measured = filled_runs.take(run_of_pair).reset_index(drop=True)
    for key in [*index, "column"]:
        measured[key] = shown[key][first_of_group][group_of_pair]
    measured["value"] = by_pair.median().to_numpy()
    with_gpus = GPUS in level.columns and bool(level[GPUS].notna().any())
    if with_gpus:
        gpus = pd.to_numeric(level[GPUS], errors="coerce")  # as the samples frame's measured rows convert
        level_of_row = np.full(len(typed), -1, dtype=np.int64)
        level_of_row[level_rows] = np.arange(len(level_rows))
        per_sample = gpus.take(level_of_row[sample_row[measured_samples]]).reset_index(drop=True)
        measured[GPUS] = per_sample.groupby(pair_code).max().reset_index(drop=True)
    unmeasured = filled_runs[~has_samples].assign(**{key: _MISSING for key in index})
    return _summary(unmeasured, measured, recipe, list(runs["run_id"]), with_gpus)


def _summary(runs: pd.DataFrame, measured: pd.DataFrame, recipe: list[str], run_order: list[str],
             with_gpus: bool) -> pd.DataFrame:
    """Returns the summary of ``measured`` (rows with the recipe, host, ``column`` and ``value``; GPUs when
    ``with_gpus``) and of ``runs`` (a row per run that measured nothing), its keys filled by :func:`_filled`."""
    import pandas as pd

    index = recipe + [HOST]  # host last: a recipe's hosts sit together
    if measured.empty:
        return runs.assign(hosts=1).replace({_MISSING: None}).reset_index(drop=True)
    wide = _pivot(measured, index, with_gpus)
    wide[HOSTS] = 1
    # Runs that measured nothing (failed early) keep a row, without variant rows that others have.
    unmeasured = runs[~runs["run_id"].isin(measured["run_id"])].assign(hosts=1)
    parts = [wide, _totals(wide, recipe), unmeasured]
    summary = pd.concat([part for part in parts if not part.empty], ignore_index=True)
    summary = _in_order(summary, recipe, run_order)
    summary = summary.rename(columns=SUMMARY_LABELS)
    first = [c for c in [*RUN_COLUMNS, HOST, HOSTS, *VARIANT_KEYS, *SUMMARY_LABELS.values(), GPUS]
             if c in summary.columns]
    rest = sorted(c for c in summary.columns if c not in first)
    return summary[first + rest].replace({_MISSING: None}).reset_index(drop=True)


def _pivot(measured: pd.DataFrame, index: list[str], with_gpus: bool) -> pd.DataFrame:
    """Returns one row per ``index`` group: the median of each benchmark.metric and, when the samples say
    (``with_gpus``), the most GPUs a figure of the group was measured on."""
    import pandas as pd

    if not with_gpus:
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
    """Returns a total row per run and recipe of the runs with more than one host (none for the others).

    Images/s is summed over the hosts; the repeats' slowest, fastest and spread (:data:`SPREAD_METRICS`) and the
    per-GPU figures are left blank (one machine's repeats say nothing about a sum's); other figures are the
    median over the hosts.
    """
    import pandas as pd

    host_count = wide.groupby("run_id", sort=False)[HOST].transform("nunique")
    several = wide[host_count > 1]
    if several.empty:
        return pd.DataFrame(columns=wide.columns)
    figures = [c for c in several.columns if c not in (*recipe, HOST, HOSTS, GPUS)
               and not c.rpartition(".")[0].endswith(PER_GPU_SUFFIX)
               and c.rpartition(".")[2] not in SPREAD_METRICS]  # left blank: see SPREAD_METRICS
    summed = [c for c in figures if c.endswith("." + THROUGHPUT_METRIC)]
    medians = [c for c in figures if c not in summed]
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
    """Returns the summary with each row's ``price_per_hour`` (USD per hour), its ``cost_usd`` and its
    ``machine_type`` (the instance type or inventory box; a total row: its hosts' types, each once).

    A host's row of a multi-host run: its own machine's price (billed amount over billed hours; a machine billed
    nothing, its ``rate_per_hour`` when given) and cost. A total
    row: the sum of its hosts' machines' prices (blank when one is unknown), and the run's whole cost. A run on
    one host: its machine's price (the run's, when no machine is named after the host, as in old stores), and
    the run's whole cost. The run's whole cost counts every machine it paid for, a failed launch attempt's too.

    Args:
        summary: a :func:`summary_frame`.
        machines: one row per run and machine: ``run_id``, ``machine_id``, ``amount_usd`` and ``billed_seconds``
            (summed over the machine's cost lines), and optionally ``machine_type`` and ``rate_per_hour``.
    """
    import numpy as np
    import pandas as pd

    if summary.empty or "run_id" not in summary.columns:
        return summary.assign(price_per_hour=pd.Series(dtype="float64"))

    def per_hour(amount: pd.Series, billed_seconds: pd.Series) -> pd.Series:
        hours = billed_seconds.astype("float64") / 3600.0
        return (amount.astype("float64") / hours.where(hours > 0)).astype("float64")

    own = machines.set_index(["run_id", "machine_id"])
    price_of = per_hour(own["amount_usd"], own["billed_seconds"])
    if "rate_per_hour" in own.columns:  # billed nothing (under a whole-minute rule's first minute): its rate
        price_of = price_of.fillna(own["rate_per_hour"].astype("float64"))
    own = own.assign(price=price_of)
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
    return summary.assign(price_per_hour=price, cost_usd=cost,
                          machine_type=_machine_types(summary, machines, key))


def _machine_types(summary: pd.DataFrame, machines: pd.DataFrame, key: pd.MultiIndex) -> list[Any]:
    """Each row's machine type: its host's machine's; a total row (or a row whose host names no machine) the types
    of its run's measured hosts, each once, sorted; else every type the run paid for."""
    import pandas as pd

    if "machine_type" not in machines.columns:
        return [None] * len(summary)
    known = machines.dropna(subset=["machine_type"])
    mine = pd.Series(known.set_index(["run_id", "machine_id"])["machine_type"].reindex(key).to_numpy(dtype=object),
                     index=summary.index)

    def joined(types: pd.Series) -> Any:
        names = sorted({t for t in types if isinstance(t, str)})
        return ", ".join(names) if names else None

    measured = mine.groupby(summary["run_id"]).agg(joined)
    paid = known.groupby("run_id")["machine_type"].agg(joined)
    fallback = summary["run_id"].map(measured).where(lambda v: v.notna(), summary["run_id"].map(paid))
    return [m if isinstance(m, str) else f if isinstance(f, str) else None
            for m, f in zip(mine, fallback, strict=True)]
