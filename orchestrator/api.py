"""The verbs as plain functions; the CLI is a thin layer over these.

Heavy modules (pandas, the lifecycle's payload packing) are imported inside the verbs that need them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import SpecError
from orchestrator.store import EventRow, MachineRow, RunRow, Store, default_home

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.lifecycle import Plan, Reporter, RunOutcome
    from orchestrator.spec import RunSpec


def plan(spec: RunSpec) -> Plan:
    """Resolves a spec into a plan without creating anything (what ``--dry-run`` shows)."""
    from orchestrator.lifecycle import make_plan

    return make_plan(spec)


def run(spec: RunSpec, *, reporter: Reporter, home: Path | None = None) -> RunOutcome:
    """Plans and executes one run end to end; teardown runs on every path.

    Returns:
        The run's outcome (succeeded, failed or interrupted).
    """
    from orchestrator.lifecycle import RunContext, execute_plan, make_plan

    the_plan = make_plan(spec)  # validates everything before the store is touched
    home = home or default_home()
    store = Store(home)
    try:
        return execute_plan(the_plan, RunContext(store=store, home=home, reporter=reporter))
    finally:
        store.close()


@dataclass(frozen=True)
class RunDetail:
    """One run with its event timeline and machines."""

    run: RunRow
    events: list[EventRow]
    machines: list[MachineRow]


def list_runs(*, last: int | None = None, home: Path | None = None) -> list[RunRow]:
    """Returns the recorded runs, oldest first (only the newest ``last`` when given)."""
    store = Store(home or default_home())
    try:
        return store.list_runs(last=last)
    finally:
        store.close()


def run_detail(run_id: str, *, home: Path | None = None) -> RunDetail:
    """Returns one run (an id or a unique prefix of one) with its events and machines."""
    store = Store(home or default_home())
    try:
        full_id = store.resolve_run_id(run_id)
        return RunDetail(store.get_run(full_id), store.events(full_id), store.machines(full_id))
    finally:
        store.close()


def report_frames(
    run_ids: Sequence[str] = (), *, last: int | None = None, home: Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns (samples, summary) frames for the given runs, the newest ``last`` runs, or all runs.

    Raises:
        UnknownRun: a run id matches no run.
    """
    from orchestrator.report.frame import samples_frame, summary_frame

    store = Store(home or default_home())
    try:
        if run_ids:
            ids = [store.resolve_run_id(run_id) for run_id in run_ids]
        else:
            ids = [row.id for row in store.list_runs(last=last)]
        samples = samples_frame(store, ids)
        return samples, summary_frame(samples)
    finally:
        store.close()


def down(run_ids: Sequence[str] = (), *, everything: bool = False, home: Path | None = None) -> list[str]:
    """Tears down what runs left behind (``--keep``, or an orchestrator that died) and returns machine ids.

    Finds machines both from the store's rows and from the provider's own listing by run, so a machine
    whose launch was recorded but never confirmed is found too.

    Raises:
        SpecError: neither run ids nor ``everything`` were given.
    """
    from orchestrator.providers import get_provider
    from orchestrator.providers.base import Machine

    if not run_ids and not everything:
        raise SpecError("RUN", "", "one or more run ids, or --all")
    home = home or default_home()
    store = Store(home)
    gone: list[str] = []
    try:
        if everything:
            ids = sorted({row.run_id for row in store.machines(live_only=True)})
        else:
            ids = [store.resolve_run_id(run_id) for run_id in run_ids]
        for run_id in ids:
            rows = store.machines(run_id, live_only=True)
            for provider_name in sorted({row.provider for row in rows}):
                provider = get_provider(provider_name, home)
                found = {m.id: m for m in provider.list_machines(run_id=run_id)}
                for row in rows:
                    if row.provider == provider_name and row.machine_id and row.machine_id not in found:
                        found[row.machine_id] = Machine(
                            id=row.machine_id, provider=row.provider, address=row.address or "",
                            port=int(row.extra.get("port") or 0), user=row.extra.get("user", ""),
                            workdir=row.extra.get("workdir", ""), launched_at=datetime.now(UTC),
                            host_key=row.extra.get("host_key") or None, extra=row.extra,
                        )
                provider.terminate(list(found.values()))
                gone.extend(found)
            store.mark_terminated(run_id)
    finally:
        store.close()
    return gone


def inventory_rows(*, home: Path | None = None) -> list[dict[str, Any]]:
    """Returns the inventory's boxes with their hourly price and the run that holds each lease."""
    from orchestrator.inventory.model import inventory_path, load_inventory

    home = home or default_home()
    inventory = load_inventory(inventory_path(home))
    store = Store(home)
    try:
        leases = store.leases()
    finally:
        store.close()
    return [
        {
            "name": h.name,
            "address": f"{h.user}@{h.host}:{h.port}",
            "gpu": f"{h.gpu.count} x {h.gpu.model}" if h.gpu.model else "none",
            "price_per_hour": h.price.usd_per_hour(),
            "prepare": h.prepare,
            "host_key": "trust on first use" if h.host_key is None else h.host_key[:24] + "…",
            "leased_by": leases.get(h.name),
        }
        for h in inventory.hosts
    ]


def inventory_check(names: list[str] | None = None, *, home: Path | None = None) -> list[dict[str, Any]]:
    """Checks boxes in parallel: reachable with the pinned host key, Python, Keras and backend, GPUs.

    Returns:
        One dict per box: name, reachable, python, keras, backend, gpus, and problem (None when all is well).
    """
    import json
    import shlex
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.errors import OrchestrateError
    from orchestrator.inventory.model import InventoryHost, inventory_path, load_inventory
    from orchestrator.providers.rented import machine_for
    from orchestrator.remote.connect import transport_to
    from orchestrator.remote.prepare import CHECK_PROBE

    home = home or default_home()
    hosts = load_inventory(inventory_path(home)).select(names=names)

    def check_one(host: InventoryHost) -> dict[str, Any]:
        result: dict[str, Any] = {"name": host.name, "reachable": False, "problem": None}
        try:
            transport = transport_to(machine_for(host, "check"), home, connect_timeout_s=30.0)
        except OrchestrateError as error:
            result["problem"] = str(error)
            return result
        result["reachable"] = True
        try:
            answer = transport.run(f"{shlex.quote(host.python)} -c {shlex.quote(CHECK_PROBE)}", timeout=300.0)
            if answer.exit_code != 0:
                stderr = answer.stderr.decode(errors="replace").strip().splitlines()
                result["problem"] = f"{host.python} failed: {stderr[-1] if stderr else 'no output'}"
            else:
                result.update(json.loads(answer.stdout.decode().strip().splitlines()[-1]))
        except (OrchestrateError, ValueError) as error:
            result["problem"] = str(error)
        finally:
            transport.close()
        return result

    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        return list(pool.map(check_one, hosts))


if TYPE_CHECKING:
    from orchestrator.catalog.breakeven import BreakevenReport, Measured


def _run_prices(store: Store, run_ids: Sequence[str]) -> dict[str, float]:
    """Returns each run's USD per machine-hour: its billed amount over its billed hours (runs with costs only)."""
    if not run_ids:
        return {}
    marks = ",".join("?" * len(run_ids))
    rows = store.query(
        f"SELECT run_id, SUM(amount_usd) AS amount, SUM(billed_seconds) AS billed FROM costs "
        f"WHERE run_id IN ({marks}) GROUP BY run_id",
        list(run_ids),
    )
    return {row["run_id"]: row["amount"] / (row["billed"] / 3600.0) for row in rows if row["billed"]}


def report_frames_derived(
    run_ids: Sequence[str] = (),
    *,
    last: int | None = None,
    baseline: str | None = None,
    references: bool = False,
    home: Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns (samples, summary) as :func:`report_frames` does, the summary with derived metrics added.

    The summary gains ``price_per_hour`` (each run's billed amount over its billed hours) and the columns of
    :data:`orchestrator.report.metrics.DERIVED_COLUMNS`.

    Args:
        run_ids: runs to report (ids or unique prefixes); by default the newest ``last`` runs, or all.
        last: the newest N runs.
        baseline: a run id (or a reference id such as ``ref-01``) for ``speedup_over_baseline``.
        references: append the published reference rows (``reference=True``, with their ``source``).
        home: the Orchestrate home.

    Raises:
        UnknownRun: a run id matches no run.
        SpecError: the baseline is not a row of the report.
    """
    from orchestrator.report.metrics import with_derived_metrics
    from orchestrator.report.references import with_references

    home = home or default_home()
    samples, summary = report_frames(run_ids, last=last, home=home)
    store = Store(home)
    try:
        prices = _run_prices(store, list(dict.fromkeys(summary.get("run_id", []))))
    finally:
        store.close()
    summary = summary.assign(price_per_hour=summary["run_id"].map(prices)) if "run_id" in summary else summary
    if references:
        summary = with_references(summary)
    elif "reference" not in summary.columns:
        summary = summary.assign(reference=False)
    if baseline is not None and "run_id" in summary.columns and baseline not in set(summary["run_id"]):
        # A baseline given as a unique prefix of a stored run resolves like any run id.
        store = Store(home)
        try:
            baseline = store.resolve_run_id(baseline)
        finally:
            store.close()
    return samples, with_derived_metrics(summary, baseline=baseline)


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
    from orchestrator.report.references import load_references

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
    return breakeven_report(options, gpu_hours_per_month, measured_throughput(run_ids, home=home),
                            reference_figures(load_references()))


def measured_throughput(run_ids: Sequence[str] = (), *, home: Path | None = None) -> list[Measured]:
    """Returns the training images/s per GPU the runs measured, with each run's GPU model.

    With no run ids: the newest run's figure per GPU model (and the newest run without a GPU).

    Raises:
        UnknownRun: a run id matches no run.
    """
    from orchestrator.catalog.breakeven import Measured, gpu_family
    from orchestrator.report.metrics import images_per_sec_per_gpu

    home = home or default_home()
    _, summary = report_frames(run_ids, home=home)
    if summary.empty or "run_id" not in summary:
        return []
    per_gpu = images_per_sec_per_gpu(summary)
    store = Store(home)
    try:
        gpus = _run_gpus(store, list(dict.fromkeys(summary["run_id"])))
    finally:
        store.close()
    best: dict[str, Measured] = {}
    for row in summary.assign(_per_gpu=per_gpu).dropna(subset=["_per_gpu"]).to_dict("records"):
        precision = row.get("precision")
        candidate = Measured(str(row["run_id"]), gpus.get(str(row["run_id"])), float(row["_per_gpu"]),
                             precision if isinstance(precision, str) else None)
        current = best.get(candidate.run_id)
        if current is None or candidate.images_per_sec_per_gpu > current.images_per_sec_per_gpu:
            best[candidate.run_id] = candidate
    if run_ids:
        return list(best.values())
    newest: dict[str | None, Measured] = {}
    for measurement in reversed(list(best.values())):  # the summary lists runs oldest first
        newest.setdefault(gpu_family(measurement.gpu), measurement)
    return list(newest.values())


def _run_gpus(store: Store, run_ids: Sequence[str]) -> dict[str, str | None]:
    """Returns each run's first GPU model as its machine reported it (None: no GPU, or not recorded)."""
    if not run_ids:
        return {}
    marks = ",".join("?" * len(run_ids))
    found: dict[str, str | None] = {}
    for row in store.query(f"SELECT id, host_json FROM runs WHERE id IN ({marks})", list(run_ids)):
        try:
            gpus = json.loads(row["host_json"] or "{}").get("gpus") or []
        except (ValueError, AttributeError):
            gpus = []
        first = gpus[0] if gpus and isinstance(gpus[0], dict) else {}
        found[row["id"]] = str(first["name"]) if first.get("name") else None
    return found
