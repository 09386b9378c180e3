"""The report's verbs: the priced frames of runs (with derived metrics), the training throughput runs measured per
GPU, and the buy-versus-rent break-even built on it. Re-exported by :mod:`orchestrator.api`.

pandas is imported inside the functions that build frames, and the catalog's break-even (its offers and the
inventory: 0.2-0.3 s of imports) inside the two verbs that need it: `orchestrate status` imports this module
through the api and uses neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import SpecError
from orchestrator.report import frame, metrics
from orchestrator.report.references import load_references, with_references
from orchestrator.store import Store, default_home

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.catalog.breakeven import BreakevenReport, Measured


def report_frames(
    run_ids: Sequence[str] = (), *, last: int | None = None, home: Path | None = None, view: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns (samples, summary) frames for the given runs, the newest ``last`` runs, or all runs.

    The summary has a row per run, recipe and host (and a total per recipe of a run over several hosts), each
    priced: ``price_per_hour`` and ``cost_usd`` as :func:`orchestrator.report.frame.priced` sets them.

    Args:
        run_ids: runs to report (ids or unique prefixes); by default the newest ``last`` runs, or all.
        last: the newest N runs.
        home: the Orchestrate home.
        view: the report view wanted. "summary" builds only what the summary report shows: the samples frame
            then holds only the per-epoch curve points (what its HTML charts read), not every sample. Any
            other view (or None) gets every sample.

    Raises:
        UnknownRun: a run id matches no run.
    """
    with Store(home or default_home()) as store:
        if run_ids:
            ids = [store.resolve_run_id(run_id) for run_id in run_ids]
        else:
            ids = [row.id for row in store.list_runs(last=last)]
        samples, summary = frame.frames(store, ids, curves_only=view == "summary")
        return samples, _with_interruptions(frame.priced(summary, _run_prices(store, ids)), store, ids)


def _with_interruptions(summary: pd.DataFrame, store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    """Adds, when a run lost machines to spot evictions, ``interruptions`` (machines evicted and replaced) and
    ``interruption_cost_usd`` (what those machines cost) to each of its rows (0 for the other runs)."""
    if not run_ids or summary.empty or "run_id" not in summary.columns:
        return summary
    evictions = store.evictions(run_ids)
    if not evictions:
        return summary
    count = {lost.run_id: lost.machines for lost in evictions}
    cost = {lost.run_id: lost.cost_usd for lost in evictions}
    return summary.assign(interruptions=summary["run_id"].map(count).fillna(0).astype(int),
                          interruption_cost_usd=summary["run_id"].map(cost).fillna(0.0))


def _run_prices(store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    """Returns what each machine of the runs was billed, one row per run and machine (machines with costs only).

    Columns: ``run_id``, ``machine_id`` (a host's name in the samples), ``amount_usd`` and ``billed_seconds``,
    each summed over the machine's cost lines, ``machine_type`` (the instance type, the inventory box, or
    "local") and ``rate_per_hour`` (the machine's price per hour, for a machine billed nothing);
    :func:`orchestrator.report.frame.priced` turns them into each summary row's USD per hour and cost.
    """
    import pandas as pd

    columns = ["run_id", "machine_id", "amount_usd", "billed_seconds", "machine_type", "rate_per_hour"]
    bills = store.machine_bills(run_ids)
    return pd.DataFrame([(b.run_id, b.machine_id, b.amount_usd, b.billed_seconds, b.machine_type, b.rate_per_hour)
                         for b in bills], columns=columns)


def report_frames_derived(
    run_ids: Sequence[str] = (),
    *,
    last: int | None = None,
    baseline: str | None = None,
    references: bool = False,
    home: Path | None = None,
    view: str | None = None,
    spread_bound: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns (samples, summary) as :func:`report_frames` does, the summary with derived metrics added.

    The summary (priced per row: a host's machine, a run's machines summed on its total row) gains the columns
    of :data:`orchestrator.report.metrics.DERIVED_COLUMNS`.

    Args:
        run_ids: runs to report (ids or unique prefixes); by default the newest ``last`` runs, or all.
        last: the newest N runs.
        baseline: a run id (or a reference id such as ``ref-01``) for ``speedup_over_baseline`` (like for like:
            same model and precision) and ``baseline_caveat`` (what else differs).
        references: append the published reference rows (``reference=True``, with their ``source``).
        home: the Orchestrate home.
        view: the report view wanted ("summary": the samples frame holds only the per-epoch curve points; see
            :func:`report_frames`).
        spread_bound: the coefficient of variation of a throughput's repeats above which ``spread_flag`` names
            it as noisy (above 0 and below 1); None: :data:`orchestrator.report.metrics.SPREAD_BOUND`.

    Raises:
        UnknownRun: a run id matches no run.
        SpecError: the baseline is not a row of the report, or the spread bound is not above 0 and below 1.
    """
    home = home or default_home()
    samples, summary = report_frames(run_ids, last=last, home=home, view=view)
    if references:
        summary = with_references(summary)
    elif "reference" not in summary.columns:
        summary = summary.assign(reference=False)
    if baseline is not None and "run_id" in summary.columns and baseline not in set(summary["run_id"]):
        if baseline.startswith("ref-"):
            ids = list(load_references()["run_id"])
            where = "" if references else " with --references (which adds those rows)"
            raise SpecError("--baseline", baseline, f"a published reference row, {ids[0]} … {ids[-1]}{where}",
                            hint="`orchestrate report --references` lists them")
        # A baseline given as a unique prefix of a stored run resolves like any run id.
        with Store(home) as store:
            baseline = store.resolve_run_id(baseline)
    bound = metrics.SPREAD_BOUND if spread_bound is None else spread_bound
    return samples, metrics.with_derived_metrics(summary, baseline=baseline, spread_bound=bound)


def breakeven(
    gpu_hours_per_month: float,
    run_ids: Sequence[str] = (),
    *,
    gpu: str | None = None,
    owned: dict[str, float | str] | None = None,
    home: Path | None = None,
) -> BreakevenReport:
    """Prices each option (catalog offers, inventory boxes, an owned box given here) for one month.

    Throughput per GPU comes from the given runs, else from the newest run that measured training throughput
    on each GPU model (and the newest without a GPU); each option gets its own GPU's figure, measured, scaled by
    published ratios, or published (see :func:`orchestrator.breakeven.assign_throughput`).

    Args:
        gpu_hours_per_month: GPU-hours of use in a month (>= 0).
        run_ids: runs whose training throughput to use.
        gpu: only options whose accelerator contains this text.
        owned: an owned box: purchase_usd, lifetime_years, watts, kwh_usd and optionally gpu_count and gpu
            (its GPU model, so a run on that GPU prices its images).
        home: the Orchestrate home (its catalog, inventory and store).

    Returns:
        A :class:`orchestrator.breakeven.BreakevenReport`.

    Raises:
        SpecError: negative hours, a bad owned box, or an invalid catalog or inventory.
        UnknownRun: a run id matches no run.
    """
    from orchestrator.catalog.breakeven import (
        breakeven_report,
        catalog_options,
        inventory_options,
        owned_option,
        reference_figures,
    )
    from orchestrator.catalog.offers import load_offers
    from orchestrator.inventory.model import inventory_path, load_inventory

    if not gpu_hours_per_month >= 0:
        raise SpecError("gpu-hours-per-month", gpu_hours_per_month, "a number of GPU-hours >= 0")
    home = home or default_home()
    options = catalog_options(load_offers(home=home), gpu=gpu)
    if inventory_path(home).is_file():
        options += inventory_options(load_inventory(inventory_path(home)).hosts, gpu=gpu)
    if owned is not None:
        options.append(owned_option(
            "owned box (command line)", purchase_usd=float(owned["purchase_usd"]),
            lifetime_years=float(owned["lifetime_years"]), watts=float(owned["watts"]),
            kwh_usd=float(owned["kwh_usd"]), gpu_count=int(float(owned.get("gpu_count", 1))),
            accelerator=str(owned.get("gpu") or ""), source="command line",
        ))
    if gpu and not options:
        every = catalog_options(load_offers(home=home))
        if inventory_path(home).is_file():
            every += inventory_options(load_inventory(inventory_path(home)).hosts)
        gpus = sorted({option.accelerator for option in every if option.accelerator})
        raise SpecError("--gpu", gpu, "text found in a GPU of the catalog or inventory: " + "; ".join(gpus))
    return breakeven_report(options, gpu_hours_per_month, measured_throughput(run_ids, home=home),
                            reference_figures(load_references()))


def measured_throughput(run_ids: Sequence[str] = (), *, home: Path | None = None) -> list[Measured]:
    """Returns the training images/s per GPU the runs measured, with the GPU model of the machine that measured.

    Each host of a multi-host run counts by itself, with its own GPU (a run's total over hosts of different
    GPUs is no one GPU's figure): a run gives its best figure per GPU model.
    With no run ids: the newest run's figure per GPU model (and the newest run without a GPU).

    Raises:
        UnknownRun: a run id matches no run.
    """
    from orchestrator.catalog.breakeven import Measured, gpu_family

    home = home or default_home()
    _, summary = report_frames(run_ids, home=home)
    if summary.empty or "run_id" not in summary:
        return []
    if "hosts" in summary.columns:
        summary = summary[summary["hosts"] == 1]  # hosts' own rows, not runs' totals
    per_gpu = metrics.images_per_sec_per_gpu(summary)
    run_list = list(dict.fromkeys(summary["run_id"]))
    with Store(home) as store:
        gpus = store.run_gpu_models(run_list)
        # A host's GPU as its own document reported it; the run's (its first document's) when the host is unknown.
        host_gpus = store.host_gpu_models(run_list)
    best: dict[tuple[str, str | None], Measured] = {}
    for row in summary.assign(_per_gpu=per_gpu).dropna(subset=["_per_gpu"]).to_dict("records"):
        precision, key = row.get("precision"), (str(row["run_id"]), row.get("host"))
        gpu = host_gpus[key] if key in host_gpus else gpus.get(key[0])
        candidate = Measured(key[0], gpu, float(row["_per_gpu"]), precision if isinstance(precision, str) else None)
        current = best.get((key[0], gpu))
        if current is None or candidate.images_per_sec_per_gpu > current.images_per_sec_per_gpu:
            best[(key[0], gpu)] = candidate
    if run_ids:
        return list(best.values())
    newest: dict[str | None, Measured] = {}
    for measurement in reversed(list(best.values())):  # the summary lists runs oldest first
        newest.setdefault(gpu_family(measurement.gpu), measurement)
    return list(newest.values())
