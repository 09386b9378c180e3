"""Derived metrics on the report's summary frame: per GPU, per dollar, to accuracy, scaling, speed-up, spread.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.errors import SpecError
from orchestrator.report.references import model_key, model_variant, precision_key

# `orchestrate --help` imports this module (the default of report's --spread-bound): pandas, numpy and frame (the
# store) load inside the functions that use them, so that --help takes 0.2 s (+0.7 s with pandas, +0.1 s with frame).
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
    "scaling_efficiency", "speedup_over_baseline", "baseline_caveat", "spread_flag",
)
# The coefficient of variation of a figure's repeats (sample stdev over mean) above which it is called noisy.
SPREAD_BOUND = 0.05
SPREAD_ACCEPTED = "a fraction above 0 and below 1 (0.05) or a percentage (5%)"
NOISY_MARK = "(noisy)"  # after a noisy figure in the table, Markdown and HTML
# Each throughput column's spread: the coefficient of variation of its repeats (frame.SUMMARY_LABELS).
SPREADS = {TRAIN: "train_images_per_sec_cv", INFERENCE: "inference_images_per_sec_cv"}


def as_floats(summary: pd.DataFrame, column: str) -> pd.Series:
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
    given = as_floats(summary, PRICE)
    fallback = as_floats(summary, "cost_usd") / (as_floats(summary, "duration_s") / 3600.0)
    return given.where(given.notna(), fallback).where(lambda price: price.notna() & (price != math.inf))


def images_per_sec_per_gpu(summary: pd.DataFrame) -> pd.Series:
    """Returns training images/s per GPU.

    The payload's per-GPU figure when it wrote one; else images/s over a ``gpus`` column of 1 or more (on a
    total row, the GPUs of all its hosts); else images/s over the row's machines (a machine without GPUs
    counts as one device).
    """
    written = as_floats(summary, TRAIN_PER_GPU)
    gpus = as_floats(summary, "gpus")
    machines = as_floats(summary, HOSTS).where(lambda hosts: hosts >= 1, 1.0).fillna(1.0)
    divided = as_floats(summary, TRAIN) / gpus.where(gpus >= 1, machines).fillna(machines)
    return written.where(written.notna(), divided)


def images_per_usd(summary: pd.DataFrame, column: str = TRAIN) -> pd.Series:
    """Returns images per dollar: images/s × 3600 / USD per hour (NaN for a run priced at $0)."""
    price = price_per_hour(summary)
    return as_floats(summary, column) * 3600.0 / price.where(price > 0)


def usd_per_million_images(summary: pd.DataFrame, column: str = TRAIN) -> pd.Series:
    """Returns USD per million images (trained, or inferred with ``column=INFERENCE``): price / throughput."""
    throughput = as_floats(summary, column)
    return price_per_hour(summary) / (throughput.where(throughput > 0) * 3600.0) * 1e6


def cost_to_accuracy_usd(summary: pd.DataFrame) -> pd.Series:
    """Returns what reaching the target accuracy cost (DAWNBench-style): time to accuracy in hours × USD/h."""
    return as_floats(summary, TIME_TO_ACCURACY) / 3600.0 * price_per_hour(summary)


def _series_keys(summary: pd.DataFrame) -> list[str]:
    return [key for key in _SERIES_KEYS if key in summary.columns]


def scaling_efficiency(summary: pd.DataFrame) -> pd.Series:
    """Returns scaling efficiency: the payload's figure when it wrote one, else recomputed from ``replicas``.

    Recomputed within one run, host (or total) and recipe against the fewest replicas measured: images/s ×
    base replicas / (replicas × base images/s). The base row itself is 1.
    """
    given = as_floats(summary, SCALING_EFFICIENCY)
    replicas = as_floats(summary, "replicas")
    throughput = as_floats(summary, TRAIN)
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


def parse_spread_bound(text: str) -> float:
    """Returns the spread bound a user typed: a fraction (``0.05``) or a percentage (``5%``), above 0 and below 1.

    Raises:
        SpecError: anything else, naming ``--spread-bound``, the text received and what is accepted.
    """
    value = str(text).strip()
    try:
        bound = float(value[:-1]) / 100.0 if value.endswith("%") else float(value)
    except ValueError:
        raise SpecError("--spread-bound", text, SPREAD_ACCEPTED) from None
    return check_spread_bound(bound, received=text)


def check_spread_bound(bound: float, *, received: object = None) -> float:
    """Returns ``bound`` when it is above 0 and below 1 (the one range check of a spread bound).

    Raises:
        SpecError: it is not (NaN and inf are not either), naming ``--spread-bound`` and ``received`` (default:
            the bound itself).
    """
    if not 0.0 < bound < 1.0:
        raise SpecError("--spread-bound", bound if received is None else received, SPREAD_ACCEPTED)
    return bound


def bound_text(fraction: float) -> str:
    """Formats a bound as a percentage, as short as it goes: 0.05 → "5%", 0.025 → "2.5%"."""
    return f"{round(fraction * 100, 6):g}%"


def spread_text(cv: float) -> str:
    """Formats a coefficient of variation as a percentage with one decimal: 0.0712 → "7.1%"."""
    return f"{cv * 100:.1f}%"


def spread_note(bound: float = SPREAD_BOUND, *, marked: bool = True) -> str:
    """Returns the sentence a rendered report states its spread bound with.

    Args:
        bound: the bound.
        marked: the figures carry their spread and mark (:func:`orchestrator.report.render.spread_cell`); else
            only the ``spread_flag`` column (labelled "noisy") names them.
    """
    said = f"are marked {NOISY_MARK}; ± is that spread" if marked else "are named in the noisy column"
    return f"Figures whose repeats spread more than {bound_text(bound)} (coefficient of variation) {said}."


def noisy(summary: pd.DataFrame, column: str, bound: float = SPREAD_BOUND) -> pd.Series:
    """Returns, per row, whether the throughput ``column``'s repeats spread more than ``bound`` (its cv column
    above the bound); False where the spread is not known (an old run, one repeat, a total row)."""
    return as_floats(summary, SPREADS[column]) > bound


def spread_flag(summary: pd.DataFrame, bound: float = SPREAD_BOUND) -> pd.Series:
    """Returns, per row, which throughput figures are noisy: ``"train cv 7.1% > 5%"``, both joined by ``"; "``
    when training and inference are; None when neither is, or the spread is not known (runs recorded before the
    payload wrote it, a figure of one repeat, a multi-host total row).

    Args:
        summary: the summary frame (``train_images_per_sec_cv``, ``inference_images_per_sec_cv`` when known).
        bound: the largest coefficient of variation of the repeats (sample stdev over mean) that is not flagged.
    """
    import numpy as np
    import pandas as pd

    said: list[list[str]] = [[] for _ in range(len(summary))]
    for column, word in ((TRAIN, "train"), (INFERENCE, "inference")):
        cv = as_floats(summary, SPREADS[column])
        for position in np.flatnonzero(noisy(summary, column, bound).to_numpy(dtype=bool)):
            said[position].append(f"{word} cv {spread_text(float(cv.iloc[position]))} > {bound_text(bound)}")
    return pd.Series(["; ".join(words) if words else None for words in said], index=summary.index, dtype=object)


@dataclass(frozen=True)
class _Side:
    """What one compared row measured, in the words a caveat uses."""

    model: str  # as its run or source names it
    variant: str | None  # e.g. "v1.5 variant" (see references.model_key)
    precision: str  # as its run or source says it ("float32", "AMP+XLA")
    framework: str
    batch: str
    xla: str
    data: str


def _stated(value: object) -> str:
    """A recipe value as a caveat says it; "not stated" when missing."""
    if value is None or type(value).__name__ == "NAType" or value != value or value == "":  # pd.NA, NaN
        return "not stated"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _framework(row: pd.Series) -> str:
    """A row's framework: a reference's ``framework``; a run's Keras ``backend`` as "keras-tensorflow"."""
    framework = row.get("framework")
    if _stated(framework) != "not stated":
        return str(framework)
    backend = row.get("backend")
    return f"keras-{backend}" if _stated(backend) != "not stated" else "not stated"


def _side(row: pd.Series) -> _Side:
    model = _stated(row.get("model"))
    batch = row.get("per_replica_batch")
    published = row.get("precision_published")
    return _Side(
        model=model, variant=model_variant(model)[1],
        precision=str(published) if _stated(published) != "not stated" else str(row["_precision"]),
        framework=_framework(row),
        batch=_stated(batch if _stated(batch) != "not stated" else row.get("batch_size")),
        xla=_stated(row.get("xla")).lower(), data=_stated(row.get("data")),
    )


def _differences(base: _Side, own: _Side) -> list[str]:
    """What differs between a baseline's row and a row of the same model and precision, baseline first."""
    said = []
    if base.variant != own.variant:
        said.append(f"model {base.model} vs {own.model}")
    for word, theirs, mine in (("framework", base.framework, own.framework), ("batch", base.batch, own.batch),
                               ("xla", base.xla, own.xla), ("data", base.data, own.data)):
        # A source that names no XLA is read as without it: only two stated settings can differ.
        unknown = word == "xla" and "not stated" in (theirs, mine)
        if theirs != mine and not unknown:
            said.append(f"{word} {theirs} vs {mine}")
    return said


def _measured(sides: list[_Side]) -> str:
    """What a run measured, in a few words: "ResNet-50 fp16 (PyTorch)"; several recipes comma-separated."""
    if not sides:
        return "no throughput"
    return ", ".join(dict.fromkeys(f"{side.model} {side.precision} ({side.framework})" for side in sides))


def compare_with_baseline(
    summary: pd.DataFrame, baseline: str, column: str = TRAIN
) -> tuple[pd.Series, pd.Series]:
    """Returns each row's speed-up over a baseline run (or published reference row) and its caveat.

    Like for like only: for each (model, precision) pair, a run's best throughput (its best recipe, as Lambda
    picks the batch that fits) over the baseline's best of that pair; then the geometric mean over the pairs both
    measured (Lambda-style normalisation across models). Models match by
    :func:`orchestrator.report.references.model_key` (``resnet50`` is ``ResNet-50``); precisions by
    :func:`orchestrator.report.references.precision_key`, a row without one being float32 (the payload's
    default). Every row of a run carries its run's figures, except that a host's row of a multi-host run carries
    that host's own (its total rows carry the run's); the baseline's figures are those of its rows that stand for
    the whole run (:func:`orchestrator.report.frame.stands_for_run`).

    The caveat (None when like for like): a run sharing no (model, precision) pair with the baseline has no
    speed-up (NaN) and the caveat says what each measured ("not like-for-like: baseline ref-13 measured ResNet-50
    fp16 (PyTorch …), this run resnet50 float32 (keras-tensorflow)"); a run that shares pairs has its speed-up, and
    the caveat lists what else differs between the compared rows, baseline first ("ref-14 vs this run: framework
    PyTorch … vs keras-tensorflow; batch 1280 vs 64; data not stated vs synthetic"): the model's variant
    (ResNet-50 v1.5), framework, batch per GPU, XLA (when both say) and data; then the run's recipes left out of
    the mean ("not compared: small_cnn float32 (keras-tensorflow)"). A run with no throughput gets neither.

    Args:
        summary: the summary frame.
        baseline: the ``run_id`` of the baseline row (a run, or a reference such as ``ref-01``).
        column: the throughput compared.

    Raises:
        SpecError: no row has ``run_id`` equal to ``baseline``.
    """
    import numpy as np
    import pandas as pd

    from orchestrator.report.frame import stands_for_run

    if baseline not in set(summary.get("run_id", [])):
        known = ", ".join(str(run_id) for run_id in dict.fromkeys(summary.get("run_id", [])))
        raise SpecError("baseline", baseline, "a run id of the report: " + (known or "none"))
    # A host's row of a multi-host run is compared as itself; every other row as its run.
    whole = stands_for_run(summary)
    host = summary["host"] if "host" in summary.columns else pd.Series(None, index=summary.index, dtype=object)
    own = host.astype(object).where(~whole & host.notna(), "").astype(str)
    model = summary["model"] if "model" in summary.columns else pd.Series(None, index=summary.index, dtype=object)
    precision = summary["precision"] if "precision" in summary.columns \
        else pd.Series(None, index=summary.index, dtype=object)
    frame = summary.assign(_throughput=as_floats(summary, column), _own=own, _whole=whole,
                           _model=[model_key(m) if _stated(m) != "not stated" else "-" for m in model],
                           _precision=[precision_key(p) if _stated(p) != "not stated" else "float32"
                                       for p in precision])
    frame = frame[frame["_throughput"] > 0]
    pair = ["_model", "_precision"]
    best_rows = frame.loc[frame.groupby(["run_id", "_own", *pair], sort=False)["_throughput"].idxmax()]
    base_rows = frame[(frame["run_id"] == baseline) & frame["_whole"]]
    base_best = base_rows.loc[base_rows.groupby(pair, sort=False)["_throughput"].idxmax()]
    base_best = base_best.set_index(pair, drop=False)
    base_sides = [_side(row) for _, row in base_best.iterrows()]
    figures: dict[tuple[str, str], float] = {}
    caveats: dict[tuple[str, str], str | None] = {}
    for (run_id, own_host), rows in best_rows.groupby(["run_id", "_own"], sort=False):
        ratios, said, apart = [], [], []
        for _, row in rows.iterrows():
            key = (row["_model"], row["_precision"])
            if key not in base_best.index:
                apart.append(_side(row))
                continue
            base = base_best.loc[key]
            ratios.append(float(row["_throughput"]) / float(base["_throughput"]))
            if run_id != baseline:
                said.extend(_differences(_side(base), _side(row)))
        group = (str(run_id), str(own_host))
        if ratios:
            figures[group] = float(np.exp(np.mean(np.log(ratios))))
            if apart and run_id != baseline:
                said.append(f"not compared: {_measured(apart)}")
            caveats[group] = f"{baseline} vs this run: " + "; ".join(dict.fromkeys(said)) if said else None
        else:
            caveats[group] = f"not like-for-like: baseline {baseline} measured {_measured(base_sides)}, this " \
                             f"run {_measured([_side(row) for _, row in rows.iterrows()])}"
    keys = list(zip(summary["run_id"].astype(str), own, strict=True))
    return (pd.Series([figures.get(key, float("nan")) for key in keys], index=summary.index, dtype="float64"),
            pd.Series([caveats.get(key) for key in keys], index=summary.index, dtype=object))


def speedup_over_baseline(summary: pd.DataFrame, baseline: str, column: str = TRAIN) -> pd.Series:
    """Returns each run's (and each host's) speed-up over a baseline run, like for like: the geometric mean over
    the (model, precision) pairs both measured of the best throughput ratios; NaN for a run sharing no pair with
    the baseline. See :func:`compare_with_baseline`, which also says what differs.

    Raises:
        SpecError: no row has ``run_id`` equal to ``baseline``.
    """
    return compare_with_baseline(summary, baseline, column)[0]


def with_derived_metrics(
    summary: pd.DataFrame, *, baseline: str | None = None, spread_bound: float = SPREAD_BOUND
) -> pd.DataFrame:
    """Returns the summary with the derived metrics of :data:`DERIVED_COLUMNS` added as columns.

    Args:
        summary: the summary frame, with ``price_per_hour`` when known (see :func:`price_per_hour`).
        baseline: the run id to compute ``speedup_over_baseline`` and ``baseline_caveat`` against; without one
            the speed-up is NaN and the caveat None.
        spread_bound: the coefficient of variation of a throughput's repeats above which ``spread_flag`` names
            it (see :func:`spread_flag`); above 0 and below 1.

    Raises:
        SpecError: the baseline is not a row of the summary, or the bound is not above 0 and below 1.
    """
    check_spread_bound(spread_bound)
    derived = summary.copy()
    derived[PRICE] = price_per_hour(summary)
    derived["train_images_per_sec_per_gpu"] = images_per_sec_per_gpu(summary)
    derived["train_images_per_usd"] = images_per_usd(summary, TRAIN)
    derived["inference_images_per_usd"] = images_per_usd(summary, INFERENCE)
    derived["usd_per_million_train_images"] = usd_per_million_images(summary, TRAIN)
    derived["usd_per_million_inferences"] = usd_per_million_images(summary, INFERENCE)
    derived["time_to_accuracy_s"] = as_floats(summary, TIME_TO_ACCURACY)
    derived["cost_to_accuracy_usd"] = cost_to_accuracy_usd(summary)
    derived["scaling_efficiency"] = scaling_efficiency(summary)
    if baseline is not None:
        derived["speedup_over_baseline"], derived["baseline_caveat"] = compare_with_baseline(summary, baseline)
    else:
        derived["speedup_over_baseline"] = as_floats(summary, "-")
        derived["baseline_caveat"] = None
    derived["spread_flag"] = spread_flag(summary, spread_bound)
    return derived


def geometric_mean(values: Sequence[float]) -> float:
    """Returns the geometric mean of positive numbers (NaN for none)."""
    if not values:
        return float("nan")
    return math.exp(sum(math.log(value) for value in values) / len(values))
