"""The verbs as plain functions; the CLI is a thin layer over these.

The report's verbs live in :mod:`orchestrator.report.verbs` and the logs verb in :mod:`orchestrator.payload_logs`;
both are re-exported here. Heavy modules (pandas, the lifecycle and its payload packing, the inventory's models,
the clouds' settings: 0.05-0.3 s of imports each) are imported inside the verbs that need them: `orchestrate status`
imports this module.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cost import CostLine
from orchestrator.errors import OrchestrateError, SpecError
from orchestrator.fanout import fan_out
from orchestrator.payload_logs import LogNote as LogNote  # the logs verb and its pieces, re-exported
from orchestrator.payload_logs import LogText as LogText
from orchestrator.payload_logs import logs as logs
from orchestrator.remote.connect import transport_to
from orchestrator.remote.prepare import CHECK_PROBE
from orchestrator.report.verbs import breakeven as breakeven  # the report's verbs, re-exported
from orchestrator.report.verbs import measured_throughput as measured_throughput
from orchestrator.report.verbs import report_frames as report_frames
from orchestrator.report.verbs import report_frames_derived as report_frames_derived
from orchestrator.store import FINAL_STATES, EventRow, MachineRow, RunRow, Store, default_home

if TYPE_CHECKING:
    from orchestrator.inventory.model import InventoryHost
    from orchestrator.lifecycle import RunOutcome
    from orchestrator.machine import Machine
    from orchestrator.plan import Plan
    from orchestrator.run_steps import Reporter
    from orchestrator.spec import RunSpec
    from orchestrator.teardown import DownResult


def plan(spec: RunSpec, *, home: Path | None = None) -> Plan:
    """Resolves a spec into a plan and has the payload check its params; creates nothing (``--dry-run``).

    Raises:
        SpecError: anything in the spec is invalid: suite, params, hosts, GPU, count, instance type.
    """
    from orchestrator.plan import make_plan
    from orchestrator.remote.payload import check_params

    home = home or default_home()
    the_plan = make_plan(spec, home=home)  # an Azure subscription left unset is a line of the plan, not a refusal
    if spec.machine.profile is not None:
        from orchestrator.providers.aws.profiles import check_profile

        check_profile(spec.machine.profile)
    check_params(the_plan.suite.name, the_plan.params)  # the payload's own rules: a short subprocess, its own step
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
    from orchestrator.lifecycle import execute_plan
    from orchestrator.run_steps import RunContext

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
    costs: list[CostLine]


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


def _configured_providers(home: Path, store: Store) -> list[str]:
    """The providers ``down --all`` asks for orphans: the dev box; rented boxes when there is an inventory; a cloud
    once a run has asked it for a machine here, or when it is configured (AWS: ``ORCHESTRATE_AWS_REGIONS`` names the
    regions to sweep; Azure: a subscription in ``AZURE_SUBSCRIPTION_ID`` or ``$ORCHESTRATE_HOME/azure.yaml``)."""
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
    from orchestrator.remote.connect import transport_to
    from orchestrator.run_steps import store_providers
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
    from orchestrator.inventory.model import inventory_path, load_inventory

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
