"""The verbs as plain functions; the CLI is a thin layer over these.

Heavy modules (pandas, the lifecycle's payload packing) are imported inside the verbs that need them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import OrchestrateError, SpecError
from orchestrator.payload_logs import LogNote as LogNote  # the logs verb and its pieces, re-exported
from orchestrator.payload_logs import LogText as LogText
from orchestrator.payload_logs import logs as logs
from orchestrator.store import FINAL_STATES, EventRow, MachineRow, RunRow, Store, default_home

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.lifecycle import Reporter, RunOutcome
    from orchestrator.machine import Machine
    from orchestrator.plan import Plan
    from orchestrator.spec import RunSpec
    from orchestrator.teardown import DownResult


def plan(spec: RunSpec, *, home: Path | None = None) -> Plan:
    """Resolves a spec into a plan and has the payload check its params; creates nothing (``--dry-run``).

    Raises:
        SpecError: anything in the spec is invalid: suite, params, hosts, GPU, count, instance type.
    """
    from orchestrator.plan import check_plan_params, make_plan

    home = home or default_home()
    the_plan = make_plan(spec, home=home)  # an Azure subscription left unset is a line of the plan, not a refusal
    if spec.machine.profile is not None:
        from orchestrator.providers.aws.profiles import check_profile

        check_profile(spec.machine.profile)
    check_plan_params(the_plan)
    return the_plan


def run(spec: RunSpec, *, reporter: Reporter, home: Path | None = None, run_id: str | None = None) -> RunOutcome:
    """Plans and executes one run end to end; teardown runs on every path.

    Args:
        run_id: the run's id, when the caller chose it (a campaign records it before the run starts); by default a
            new one.

    Returns:
        The run's outcome (succeeded, failed or interrupted).
    """
    from orchestrator.access import allowed_cidr
    from orchestrator.lifecycle import RunContext, execute_plan

    home = home or default_home()
    the_plan = plan(spec, home=home)  # validates everything before the store is touched
    if spec.provider == "azure":
        from orchestrator.clouds.azure import settings

        settings(home)  # a launch needs a subscription and a cloud named (config only: no call to Azure)
    # A cloud machine's port 22 is opened to this computer alone (or --allow-cidr): known before anything exists.
    cloud = any(p.provider not in ("local", "rented") for p in the_plan.placements)
    cidr = allowed_cidr(spec.machine.allow_cidr) if cloud else None
    with Store(home) as store:
        return execute_plan(the_plan, RunContext(store=store, home=home, reporter=reporter, allowed_cidr=cidr,
                                                 provider_options=_provider_options(spec.machine.profile)),
                            run_id=run_id)


def _provider_options(profile: str | None) -> dict[str, dict[str, Any]]:
    """The providers' settings a run or `down` passes on: the AWS profile, when one is named."""
    return {"aws": {"profile": profile}} if profile else {}


@dataclass(frozen=True)
class RunDetail:
    """One run with its event timeline, machines and cost lines (per machine and component)."""

    run: RunRow
    events: list[EventRow]
    machines: list[MachineRow]
    costs: list[dict[str, Any]]


def list_runs(*, last: int | None = None, home: Path | None = None) -> list[RunRow]:
    """Returns the recorded runs, oldest first (only the newest ``last`` when given)."""
    with Store(home or default_home()) as store:
        return store.list_runs(last=last)


def run_detail(run_id: str, *, home: Path | None = None) -> RunDetail:
    """Returns one run (an id or a unique prefix of one) with its events, machines and costs."""
    with Store(home or default_home()) as store:
        full_id = store.resolve_run_id(run_id)
        return RunDetail(store.get_run(full_id), store.events(full_id), store.machines(full_id),
                         store.costs(full_id))


def machine_up(
    run_id: str, *, node: int | None = None, machine_id: str | None = None, home: Path | None = None
) -> Machine:
    """One machine a run left up (as recorded, with its pinned keys): the only one, the ``node``-th, or by id.

    Raises:
        UnknownRun: the id matches no run.
        SpecError: the run has no machine up, or ``node``/``machine_id`` names none of them.
    """
    with Store(home or default_home()) as store:
        full_id = store.resolve_run_id(run_id)
        up = [row.machine for row in store.machines(full_id, live_only=True) if row.machine is not None]
    ids = ", ".join(m.id for m in up)
    if not up:
        raise SpecError("RUN", run_id, "a run with a machine still up (after --keep, or a teardown that failed)")
    if machine_id is not None:
        chosen = [m for m in up if m.id == machine_id]
        if not chosen:
            raise SpecError("--machine", machine_id, f"one of the run's machines up: {ids}")
        return chosen[0]
    if node is not None:
        if not 1 <= node <= len(up):
            raise SpecError("--node", node, f"1 to {len(up)} (machines up: {ids})")
        return up[node - 1]
    if len(up) > 1:
        raise SpecError("--node", None, f"1 to {len(up)}: the run has several machines up ({ids})")
    return up[0]


def leases(*, home: Path | None = None) -> dict[str, str]:
    """Returns the rented boxes held now: box name → the run that holds it."""
    with Store(home or default_home()) as store:
        return store.leases()


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
    from orchestrator.report.frame import frames, priced

    with Store(home or default_home()) as store:
        if run_ids:
            ids = [store.resolve_run_id(run_id) for run_id in run_ids]
        else:
            ids = [row.id for row in store.list_runs(last=last)]
        samples, summary = frames(store, ids, curves_only=view == "summary")
        return samples, _with_interruptions(priced(summary, _run_prices(store, ids)), store, ids)


def _configured_providers(home: Path, store: Store) -> list[str]:
    """The providers ``down --all`` asks for orphans: the dev box; rented boxes when there is an inventory; a cloud
    once a run has asked it for a machine here, or when it is configured (AWS: ``ORCHESTRATE_AWS_REGIONS`` names the
    regions to sweep; Azure: a subscription in ``AZURE_SUBSCRIPTION_ID`` or ``$ORCHESTRATE_HOME/azure.yaml``)."""
    import os

    from orchestrator.clouds.azure import CONFIG_FILE, SUBSCRIPTION_ENV
    from orchestrator.inventory.model import inventory_path

    names = ["local", *(["rented"] if inventory_path(home).is_file() else [])]
    used = {row.provider for row in store.machines()}
    configured = {"aws": bool(os.environ.get("ORCHESTRATE_AWS_REGIONS")),
                  "azure": bool(os.environ.get(SUBSCRIPTION_ENV)) or (home / CONFIG_FILE).is_file()}
    return names + [cloud for cloud in ("aws", "azure") if cloud in used or configured[cloud]]


def down(
    run_ids: Sequence[str] = (), *, everything: bool = False, home: Path | None = None, profile: str | None = None,
    forget: bool = False,
) -> list[DownResult]:
    """Tears down what runs left behind (``--keep``, an orchestrator that died, a failed clean-up).

    Uses the host key the store pinned for each machine; an abandoned run is recorded ``interrupted`` with its
    cost. With ``everything``: every run with a machine up and every abandoned run, plus machines that the
    configured providers list as Orchestrate's but the store does not hold as up (orphans). Runs still going
    on (their orchestrator is alive) are left alone. ``profile`` is the AWS profile to use (default: each run's
    own, as recorded, else boto3's chain). ``forget`` (``down RUN --forget``, only for runs named one by one) gives
    up the remote clean-up: nothing connects to the machines; a rented box or the dev box is released and recorded
    ``forgotten`` (its run directory, and any payload, left there); a cloud machine is still terminated (never left
    billing). See :func:`orchestrator.teardown.down_run`.

    Raises:
        SpecError: neither run ids nor ``everything`` were given, ``forget`` without run ids or with ``everything``,
            or a run named is still going on.
        UnknownRun: a run id matches no run.
    """
    from orchestrator.lifecycle import store_providers
    from orchestrator.remote.connect import transport_to
    from orchestrator.teardown import DownResult as DownResultType
    from orchestrator.teardown import down_run

    if forget and (everything or not run_ids):
        raise SpecError("--forget", "--all" if everything else "no RUN",
                        "one or more RUN ids named one by one: forgetting a box's clean-up is decided run by run")
    if not run_ids and not everything:
        raise SpecError("RUN", "", "one or more run ids, or --all")
    home = home or default_home()
    done: list[DownResult] = []
    with Store(home) as store:
        made: dict[str | None, Callable[[str], Any]] = {}

        def providers_of(run_id: str | None) -> Callable[[str], Any]:
            """The providers for a run: with the profile given, else the run's own (orphans: boto3's chain)."""
            chosen = profile or (_recorded_profile(store, run_id) if run_id is not None else None)
            if chosen not in made:
                made[chosen] = store_providers(home, store, _provider_options(chosen))
            return made[chosen]

        providers = providers_of(None)
        orphans: dict[str, list[Any]] = {}
        if everything:
            live = {row.run_id for row in store.machines(live_only=True)}
            runs = [r for r in store.list_runs() if r.id in live or (r.state not in FINAL_STATES and r.abandoned)]
            ids = [r.id for r in runs if r.state in FINAL_STATES or r.abandoned]
            up = {(row.run_id, row.machine_id) for row in store.machines(live_only=True)}
            for name in _configured_providers(home, store):
                try:
                    listed = providers(name).list_machines()
                except OrchestrateError as error:  # one cloud unreachable: the others are still swept
                    done.append(DownResultType(f"({name})", failed={"orphans": f"not listed: {error}"}))
                    continue
                for machine in listed:
                    if (machine.run_id, machine.id) not in up:
                        orphans.setdefault(machine.run_id, []).append(machine)
            ids += [run_id for run_id in orphans if run_id not in ids]
        else:
            ids = list(dict.fromkeys(store.resolve_run_id(run_id) for run_id in run_ids))
            for run_id in ids:
                row = store.get_run(run_id)
                if row.state not in FINAL_STATES and not row.abandoned:
                    raise SpecError("RUN", run_id, "a run that has ended or whose orchestrator is gone",
                                    hint="this run is still going on: stop it with Ctrl-C (or SIGTERM) where it runs")
        for run_id in ids:
            done.append(down_run(store, run_id, providers=providers_of(run_id), connect=transport_to, home=home,
                                 extra=orphans.get(run_id, ()), forget=forget))
    return done


def _recorded_profile(store: Store, run_id: str) -> str | None:
    """The AWS profile a run was started with, as its recorded spec says (None for an unknown run)."""
    try:
        machine = store.get_run(run_id).spec.get("machine") or {}
    except OrchestrateError:
        return None
    profile = machine.get("profile")
    return profile if isinstance(profile, str) else None


def import_terraform(
    output: Path, *, key_path: Path, merge: bool = False, prepare: str = "image", python: str = "python3",
    home: Path | None = None,
) -> Any:
    """Adds the boxes of a ``terraform output -json`` file to the inventory (see
    :mod:`orchestrator.inventory.terraform`); returns what was added and replaced.

    Raises:
        SpecError: the output, the key or the inventory is invalid; nothing is written then.
    """
    from orchestrator.inventory.model import inventory_path
    from orchestrator.inventory.terraform import entries, import_into, read_outputs

    hosts = entries(read_outputs(output), key_path=key_path, prepare=prepare, python=python)
    return import_into(inventory_path(home or default_home()), hosts, merge=merge)


def inventory_rows(*, home: Path | None = None) -> list[dict[str, Any]]:
    """Returns the inventory's boxes with their hourly price and the run that holds each lease."""
    from orchestrator.inventory.model import inventory_path, load_inventory

    home = home or default_home()
    inventory = load_inventory(inventory_path(home))
    with Store(home) as store:
        leases = store.leases()
    return [
        {
            "name": h.name,
            "address": f"{h.user}@{h.host}:{h.port}",
            "gpu": h.gpu_text,
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

    from orchestrator.fanout import fan_out
    from orchestrator.inventory.model import InventoryHost, inventory_path, load_inventory
    from orchestrator.remote.connect import transport_to
    from orchestrator.remote.prepare import CHECK_PROBE

    home = home or default_home()
    hosts = load_inventory(inventory_path(home)).select(names=names)

    def check_one(host: InventoryHost) -> dict[str, Any]:
        result: dict[str, Any] = {"name": host.name, "reachable": False, "problem": None}
        try:
            transport = transport_to(host.access(), home, 30.0)
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

    checked = fan_out(hosts, check_one, name=lambda host: host.name, thread_name="check")
    return [outcome if isinstance(outcome, dict) else
            {"name": host.name, "reachable": False, "problem": f"internal error: {outcome!r}"}
            for host, outcome in checked]


if TYPE_CHECKING:
    from orchestrator.catalog.breakeven import BreakevenReport, Measured


def _with_interruptions(summary: pd.DataFrame, store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    """Adds, when a run lost machines to spot evictions, ``interruptions`` (machines evicted and replaced) and
    ``interruption_cost_usd`` (what those machines cost) to each of its rows (0 for the other runs)."""
    if not run_ids or summary.empty or "run_id" not in summary.columns:
        return summary
    marks = ",".join("?" * len(run_ids))
    rows = store.query(
        f"SELECT m.run_id, COUNT(DISTINCT m.machine_id), COALESCE(SUM(c.amount_usd), 0) FROM machines m "
        f"LEFT JOIN costs c ON c.run_id = m.run_id AND c.machine_id = m.machine_id "
        f"WHERE m.state = 'evicted' AND m.run_id IN ({marks}) GROUP BY m.run_id", list(run_ids))
    if not rows:
        return summary
    count = {row[0]: int(row[1]) for row in rows}
    cost = {row[0]: float(row[2]) for row in rows}
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
    if not run_ids:
        return pd.DataFrame(columns=columns)
    marks = ",".join("?" * len(run_ids))
    rows = store.query(
        f"SELECT c.run_id, c.machine_id, SUM(c.amount_usd), SUM(c.billed_seconds), "
        f"(SELECT json_extract(m.record_json, '$.placement.instance_type') FROM machines m "
        f" WHERE m.run_id = c.run_id AND m.machine_id = c.machine_id ORDER BY m.attempt DESC LIMIT 1), "
        f"MAX(c.price_per_hour) FROM costs c WHERE c.run_id IN ({marks}) GROUP BY c.run_id, c.machine_id",
        list(run_ids),
    )
    return pd.DataFrame([tuple(row) for row in rows], columns=columns)


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
    from orchestrator.report.metrics import SPREAD_BOUND, with_derived_metrics
    from orchestrator.report.references import with_references

    home = home or default_home()
    samples, summary = report_frames(run_ids, last=last, home=home, view=view)
    if references:
        summary = with_references(summary)
    elif "reference" not in summary.columns:
        summary = summary.assign(reference=False)
    if baseline is not None and "run_id" in summary.columns and baseline not in set(summary["run_id"]):
        if baseline.startswith("ref-"):
            from orchestrator.report.references import load_references

            ids = list(load_references()["run_id"])
            where = "" if references else " with --references (which adds those rows)"
            raise SpecError("--baseline", baseline, f"a published reference row, {ids[0]} … {ids[-1]}{where}",
                            hint="`orchestrate report --references` lists them")
        # A baseline given as a unique prefix of a stored run resolves like any run id.
        with Store(home) as store:
            baseline = store.resolve_run_id(baseline)
    bound = SPREAD_BOUND if spread_bound is None else spread_bound
    return samples, with_derived_metrics(summary, baseline=baseline, spread_bound=bound)


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
    from orchestrator.report.metrics import images_per_sec_per_gpu

    home = home or default_home()
    _, summary = report_frames(run_ids, home=home)
    if summary.empty or "run_id" not in summary:
        return []
    if "hosts" in summary.columns:
        summary = summary[summary["hosts"] == 1]  # hosts' own rows, not runs' totals
    per_gpu = images_per_sec_per_gpu(summary)
    run_list = list(dict.fromkeys(summary["run_id"]))
    with Store(home) as store:
        gpus = _run_gpus(store, run_list)
        documents = store.query(
            f"SELECT run_id, host, host_json FROM documents WHERE run_id IN ({','.join('?' * len(run_list))})",
            run_list,
        ) if run_list else []

    def first_gpu(host_json: str | None) -> str | None:
        try:
            listed = json.loads(host_json or "{}").get("gpus") or []
        except (ValueError, AttributeError):
            listed = []
        first = listed[0] if listed and isinstance(listed[0], dict) else {}
        return str(first["name"]) if first.get("name") else None

    # A host's GPU as its own document reported it; the run's (its first document's) when the host is unknown.
    host_gpus = {(row["run_id"], row["host"]): first_gpu(row["host_json"]) for row in documents}
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
