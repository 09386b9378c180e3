"""Derived metrics on the report's summary frame: per GPU, per dollar, to accuracy, scaling and speed-up.

Each metric is a pure function of a summary frame (one row per run, recipe and host, plus a total row per
recipe of a run over several hosts, see :func:`orchestrator.report.frame.summary_frame`) that returns a column
aligned with it; NaN where the inputs are missing or make no sense (a run priced at $0 has no images per
dollar). :func:`with_derived_metrics` adds them all as columns.

A row's price (``price_per_hour``) and throughput (``train_images_per_sec``) are of the same machines: a
host's row, its machine's; a total row, all its hosts' (throughput summed, prices summed), so per-dollar
figures need no other care. DAWNBench prices training as hours × cost per hour, and an inference as cost per
hour × the time one image takes, which is what these do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

TRAIN = "train_images_per_sec"
INFERENCE = "inference_images_per_sec"
TRAIN_PER_GPU = "train_throughput_per_gpu.images_per_sec"  # written by the payload when metadata gpus >= 1
TIME_TO_ACCURACY = "train.time_to_accuracy_s"
SCALING_EFFICIENCY = "train_throughput.scaling_efficiency"
PRICE = "price_per_hour"  # USD per hour of the row's machines (one host's, or a total row's hosts' summed)
HOSTS = "hosts"  # machines a row stands for (see orchestrator.report.frame.HOSTS)
# Keys that tell recipes apart but are not what a speed-up or a scaling series varies.
_SERIES_KEYS = ("model", "weights", "phase", "data", "pipeline", "precision", "xla", "batch_size", "image_size",
                "per_replica_batch", "strategy", "backend")
DERIVED_COLUMNS = (
    "train_images_per_sec_per_gpu", "train_images_per_usd", "inference_images_per_usd",
    "usd_per_million_train_images", "usd_per_million_inferences", "time_to_accuracy_s", "cost_to_accuracy_usd",
    "scaling_efficiency", "speedup_over_baseline",
)


def _numbers(summary: pd.DataFrame, column: str) -> pd.Series:
    """Returns a column as floats (NaN where missing), or all NaN when the frame lacks it."""
    import pandas as pd

    if column not in summary.columns:
        return pd.Series(float("nan"), index=summary.index, dtype="float64")
    return pd.to_numeric(summary[column], errors="coerce").astype("float64")


def price_per_hour(summary: pd.DataFrame) -> pd.Series:
    """Returns USD per hour of each row's machines.

    The ``price_per_hour`` column when present (billed amount over billed hours); else ``cost_usd`` over
    ``duration_s``, which counts unbilled seconds too and so understates the price when a minimum applied.
    """
    given = _numbers(summary, PRICE)
    fallback = _numbers(summary, "cost_usd") / (_numbers(summary, "duration_s") / 3600.0)
    return given.where(given.notna(), fallback).where(lambda price: price.notna() & (price != math.inf))


def images_per_sec_per_gpu(summary: pd.DataFrame) -> pd.Series:
    """Returns training images/s per GPU.

    The payload's per-GPU figure when it wrote one; else images/s over a ``gpus`` column of 1 or more (on a
    total row, the GPUs of all its hosts); else images/s over the row's machines (a machine without GPUs
    counts as one device).
    """
    written = _numbers(summary, TRAIN_PER_GPU)
    gpus = _numbers(summary, "gpus")
    machines = _numbers(summary, HOSTS).where(lambda hosts: hosts >= 1, 1.0).fillna(1.0)
    divided = _numbers(summary, TRAIN) / gpus.where(gpus >= 1, machines).fillna(machines)
    return written.where(written.notna(), divided)


def images_per_usd(summary: pd.DataFrame, column: str = TRAIN) -> pd.Series:
    """Returns images per dollar: images/s × 3600 / USD per hour (NaN for a run priced at $0)."""
    price = price_per_hour(summary)
    return _numbers(summary, column) * 3600.0 / price.where(price > 0)


def usd_per_million_images(summary: pd.DataFrame, column: str = TRAIN) -> pd.Series:
    """Returns USD per million images (trained, or inferred with ``column=INFERENCE``): price / throughput."""
    throughput = _numbers(summary, column)
    return price_per_hour(summary) / (throughput.where(throughput > 0) * 3600.0) * 1e6


def cost_to_accuracy_usd(summary: pd.DataFrame) -> pd.Series:
    """Returns what reaching the target accuracy cost (DAWNBench-style): time to accuracy in hours × USD/h."""
    return _numbers(summary, TIME_TO_ACCURACY) / 3600.0 * price_per_hour(summary)


def _series_keys(summary: pd.DataFrame) -> list[str]:
    return [key for key in _SERIES_KEYS if key in summary.columns]


def scaling_efficiency(summary: pd.DataFrame) -> pd.Series:
    """Returns scaling efficiency: the payload's figure when it wrote one, else recomputed from ``replicas``.

    Recomputed within one run, host (or total) and recipe against the fewest replicas measured: images/s ×
    base replicas / (replicas × base images/s). The base row itself is 1.
    """
    given = _numbers(summary, SCALING_EFFICIENCY)
    replicas = _numbers(summary, "replicas")
    throughput = _numbers(summary, TRAIN)
    recomputed = given * float("nan")
    usable = replicas.notna() & throughput.notna() & (replicas >= 1) & (throughput > 0)
    if usable.any():
        keys = [key for key in ("run_id", "host") if key in summary.columns] + _series_keys(summary)
        series = summary.loc[usable, keys].astype(str).agg("|".join, axis=1)
        for index in series.groupby(series).groups.values():
            if replicas[index].nunique() < 2:
                continue  # a lone replica count has nothing to scale against
            base = int(replicas[index].to_numpy().argmin())
            base_replicas, base_throughput = float(replicas[index].iloc[base]), float(throughput[index].iloc[base])
            recomputed[index] = throughput[index] * base_replicas / (replicas[index] * base_throughput)
    return given.where(given.notna(), recomputed)


def speedup_over_baseline(summary: pd.DataFrame, baseline: str, column: str = TRAIN) -> pd.Series:
    """Returns each run's (and each host's) speed-up over a baseline run, normalised across models (Lambda-style).

    For each model, a run's best throughput (its best recipe, as Lambda picks the batch that fits) over the
    baseline's best on that model; then the geometric mean over the models both measured. Every row of a
    run carries its run's figure, except that a host's row of a multi-host run carries that host's own (its
    total rows carry the run's); the baseline's figures are those of its rows that stand for the whole run
    (:func:`orchestrator.report.frame.stands_for_run`). NaN for a run sharing no model with the baseline.

    Args:
        summary: the summary frame.
        baseline: the ``run_id`` of the baseline row (a run, or a reference such as ``ref-01``).
        column: the throughput compared.

    Raises:
        SpecError: no row has ``run_id`` equal to ``baseline``.
    """
    import numpy as np
    import pandas as pd

    from orchestrator.errors import SpecError
    from orchestrator.report.frame import stands_for_run

    if baseline not in set(summary.get("run_id", [])):
        known = ", ".join(str(run_id) for run_id in dict.fromkeys(summary.get("run_id", [])))
        raise SpecError("baseline", baseline, "a run id of the report: " + (known or "none"))
    # A host's row of a multi-host run is compared as itself; every other row as its run.
    whole = stands_for_run(summary)
    host = summary["host"] if "host" in summary.columns else pd.Series(None, index=summary.index, dtype=object)
    own = host.astype(object).where(~whole & host.notna(), "").astype(str)
    frame = summary.assign(_throughput=_numbers(summary, column), _model=summary.get("model", "-"), _own=own,
                           _whole=whole)
    frame = frame[frame["_throughput"] > 0]
    frame = frame.assign(_model=frame["_model"].astype(object).where(frame["_model"].notna(), "-"))
    best = frame.groupby(["run_id", "_own", "_model"])["_throughput"].max()
    base = frame[(frame["run_id"] == baseline) & frame["_whole"]].groupby("_model")["_throughput"].max()
    # The geometric mean of the ratios over the models the baseline measured too: exp of the mean log.
    ratios = best / base.reindex(best.index.get_level_values("_model")).to_numpy(dtype="float64")
    figures = np.exp(np.log(ratios.dropna()).groupby(level=["run_id", "_own"]).mean())
    rows = pd.MultiIndex.from_arrays([summary["run_id"], own])
    return pd.Series(figures.reindex(rows).to_numpy(dtype="float64"), index=summary.index)


def with_derived_metrics(summary: pd.DataFrame, *, baseline: str | None = None) -> pd.DataFrame:
    """Returns the summary with the derived metrics of :data:`DERIVED_COLUMNS` added as columns.

    Args:
        summary: the summary frame, with ``price_per_hour`` when known (see :func:`price_per_hour`).
        baseline: the run id to compute ``speedup_over_baseline`` against; the column is NaN without one.
    """
    derived = summary.copy()
    derived[PRICE] = price_per_hour(summary)
    derived["train_images_per_sec_per_gpu"] = images_per_sec_per_gpu(summary)
    derived["train_images_per_usd"] = images_per_usd(summary, TRAIN)
    derived["inference_images_per_usd"] = images_per_usd(summary, INFERENCE)
    derived["usd_per_million_train_images"] = usd_per_million_images(summary, TRAIN)
    derived["usd_per_million_inferences"] = usd_per_million_images(summary, INFERENCE)
    derived["time_to_accuracy_s"] = _numbers(summary, TIME_TO_ACCURACY)
    derived["cost_to_accuracy_usd"] = cost_to_accuracy_usd(summary)
    derived["scaling_efficiency"] = scaling_efficiency(summary)
    derived["speedup_over_baseline"] = (
        speedup_over_baseline(summary, baseline) if baseline is not None else _numbers(summary, "-")
    )
    return derived


def geometric_mean(values: Sequence[float]) -> float:
    """Returns the geometric mean of positive numbers (NaN for none)."""
    if not values:
        return float("nan")
    return math.exp(sum(math.log(value) for value in values) / len(values))
