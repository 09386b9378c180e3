"""Provisioning: the plan's placements launched in order until one gives the machines (DESIGN §3).

Each attempt is recorded before the provider is called. A capacity error is a failed ``launch`` event; what the
attempt left is found by tag, terminated and billed, and the next placement is tried. A quota error is swept and
billed the same way but ends the run with the quota to raise (a spot quota only skips to the on-demand placements);
an auth error never fails over, and a failed sweep stops failover. ``--reclaim`` frees boxes held by dead runs first.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from orchestrator.catalog.spot import at_quote
from orchestrator.cost import CostLine
from orchestrator.errors import BoxHeld, CapacityError, ProviderError, QuotaError, SpotRefused
from orchestrator.machine import LaunchRequest, Machine, Placement
from orchestrator.remote.session import Session
from orchestrator.run_steps import RunContext, RunSteps
from orchestrator.store import now
from orchestrator.teardown import down_run, price_machines

if TYPE_CHECKING:
    from orchestrator.plan import Plan
    from orchestrator.providers.base import Provider


class Provisioning(RunSteps):
    """The launch attempts of a run, and what failed attempts left: machines to tear down, costs to bill."""

    def __init__(self, plan: Plan, ctx: RunContext, run_id: str) -> None:
        super().__init__(plan, ctx, run_id)
        self.providers_used: set[str] = set()
        self.leftovers: list[Machine] = []  # machines a failed launch left (no session): torn down and billed
        self.attempt_costs: list[CostLine] = []  # machines of failed launch attempts (and evicted machines)

    # provision -------------------------------------------------------------------------------------

    def provision(self, first_attempt: int = 1) -> None:
        """Launches the plan's placements in order until one succeeds (numbering the attempts from
        ``first_attempt``: a replacement for an evicted machine goes on from the run's earlier attempts)."""
        with self.step("provision") as note:
            failures: list[str] = []
            attempts = self.plan.attempts
            spot_refused = ""  # why every remaining spot placement is skipped, once one was refused as a whole
            for position, placement in enumerate(attempts, 1):
                attempt = position + first_attempt - 1
                if placement.spot and spot_refused:
                    failures.append(f"{placement.describe()}: skipped ({spot_refused})")
                    continue
                on_demand_left = any(not p.spot for p in attempts[position:])
                try:
                    machines = self.launch(attempt, placement)
                except QuotaError as error:
                    # A quota is raised by a person (the error names it), not found in another placement; only a
                    # spot quota leaves the on-demand placements the spec allows.
                    if not (placement.spot and on_demand_left):
                        raise
                    spot_refused = f"attempt {attempt} hit the spot quota, which refuses every spot placement"
                    failures.append(f"{placement.describe()}: {error}")
                    continue
                except CapacityError as error:
                    if isinstance(error, SpotRefused) and placement.spot:
                        # The same max price, the same account: every other spot placement would be refused too.
                        if not on_demand_left:
                            raise  # the market's one line says it best; no on-demand placement to fall back to
                        spot_refused = f"the spot market refused attempt {attempt} as a whole"
                    elif len(attempts) == 1:
                        raise  # nothing else to try: the provider's own words (and hint) say it best
                    failures.append(f"{placement.describe()}: {error}")
                    continue
                self.sessions = [Session(machine) for machine in machines]
                note["detail"] = (f"attempt {attempt}: " if attempt > 1 else "") + (
                    f"spot placements skipped: {spot_refused}; " if spot_refused else "") + ", ".join(
                    f"{m.id} at {m.access.describe()}" for m in machines)
                return
            more = len(self.plan.placements) - len(attempts)
            raise CapacityError(
                f"no placement could be launched in {len(attempts)} attempt(s): " + "; ".join(failures),
                hint=f"{more} more placement(s) allowed: raise max_attempts" if more > 0 else
                "try later, another region (regions: [...]) or another --gpu",
            )

    def launch(self, attempt: int, placement: Placement) -> list[Machine]:
        """One launch attempt: recorded before the provider is called; a capacity error sweeps what it left."""
        spec = self.plan.spec
        provider = self.ctx.provider(placement.provider)
        self.providers_used.add(placement.provider)
        request = LaunchRequest(
            run_id=self.run_id, placement=placement, count=self.plan.count, attempt=attempt,
            tags={"orchestrate-run": self.run_id}, wait_s=spec.machine.wait_s, image=placement.image or self.plan.image,
            allowed_cidr=self.ctx.allowed_cidr, on_try=lambda where, outcome, detail: self.event(
                "zone", outcome, f"attempt {attempt}: {where}: {detail}"),
        )
        recorded = {k: v for k, v in asdict(request).items() if k != "on_try"}
        # Recorded before the provider is called, so a crash mid-launch can still be cleaned up.
        row = self.store.record_launch_request(self.run_id, placement.provider, recorded, attempt=attempt)
        with self.step("launch") as note:
            note["detail"] = f"attempt {attempt}: {placement.describe()}"
            try:
                machines = provider.launch(request)
            except BoxHeld as error:
                if not spec.machine.reclaim:
                    raise
                self.reclaim(error)
                machines = provider.launch(request)
            except (CapacityError, QuotaError) as error:
                note["detail"] += f": {error}"
                self.sweep(provider, row, attempt, placement)
                raise
            except Exception:
                # Failed after the machines may exist (e.g. they never reached running): record what the provider
                # lists for the run, so that the teardown terminates them and the price step bills them.
                self.record_leftovers(provider, row, placement)
                raise
            machines = self.with_environment(self.at_launch_price(machines) if placement.spot else machines)
            self.store.record_machines(row, machines)
            note["detail"] += ": " + ", ".join(m.id for m in machines)
            return machines

    def at_launch_price(self, machines: list[Machine]) -> list[Machine]:
        """Spot machines priced at what their cloud quotes now for their placement (one launch: one type, one zone);
        at the catalog's price, said so, when it does not quote."""
        try:
            quoter = self.ctx.spot_quotes(machines[0].placement.provider) if machines else None
            quote = quoter(machines[0].placement) if quoter is not None else None
        except Exception:  # noqa: BLE001 - a launch never fails for its price: the plan's price stands, said so
            quote = None
        return [replace(m, placement=at_quote(m.placement, quote)) for m in machines]

    def with_environment(self, machines: list[Machine]) -> list[Machine]:
        """The machines with the spec's image environment (``machine.environment``), where it names one."""
        given = self.plan.spec.machine.environment
        if given is None:
            return machines
        environment = given.environment()
        run_dir = f"{environment.workdir.rstrip('/')}/runs/{self.run_id}"
        return [replace(m, environment=environment, run_dir=run_dir) for m in machines]

    def listed(self, provider: Provider, placement: Placement) -> list[Machine]:
        """What the provider lists for the run, priced at the attempt's price where the listing knows none (a cloud's
        listing by tag knows the type, not the price)."""
        return [m if m.placement.price_per_hour or m.placement.price_fixed
                else replace(m, placement=replace(m.placement, price_per_hour=placement.price_per_hour))
                for m in provider.list_machines(run_id=self.run_id)]

    def record_leftovers(self, provider: Provider, row: int, placement: Placement) -> None:
        """Records the machines a launch that failed left (best effort: the teardown sweeps by tag regardless)."""
        try:
            found = self.listed(provider, placement)
            if found:
                self.store.record_machines(row, found)
        except Exception:  # noqa: BLE001 - the launch's own error is the one to raise
            return
        self.leftovers += found

    def sweep(self, provider: Provider, row: int, attempt: int, placement: Placement) -> None:
        """Finds what a failed attempt left (by tag), terminates and bills it (at the attempt's price where the
        listing knows none); a failed sweep stops failover."""
        found: list[Machine] = []
        try:
            found = self.listed(provider, placement)
            if found:
                self.store.record_machines(row, found)
            provider.terminate(self.run_id, found)
        except Exception as error:  # noqa: BLE001 - any failure here must stop failover
            self.store.mark_machines(self.run_id, [m.id for m in found], "cleanup_failed")
            raise ProviderError(
                f"attempt {attempt} left machines that could not be cleaned up ({error}); not trying other placements",
                hint=f"run `orchestrate down {self.run_id}`",
            ) from error
        gone = now()
        self.store.mark_machines(self.run_id, [m.id for m in found], "terminated", at=gone)
        if not found:
            self.store.end_request(row, "failed")
        self.attempt_costs += price_machines(found, gone_at={m.id: gone for m in found}, execute_start=None,
                                             execute_end=None, until=gone)

    def reclaim(self, error: BoxHeld) -> None:
        """--reclaim: tears down the runs that hold the boxes (stopping their payloads), as `down` would."""
        runs = sorted({holder.run_id for holder in error.holders.values()})
        with self.step("reclaim") as note:
            done = [down_run(self.store, run_id, providers=self.ctx.provider, connect=self.ctx.connect,
                             home=self.ctx.home) for run_id in runs]
            note["detail"] = "; ".join(f"{d.run_id}: {d.state}, stopped on {', '.join(d.gone) or 'nothing'}"
                                       for d in done)
            failed = {machine: why for d in done for machine, why in d.failed.items()}
            if failed:
                raise ProviderError("--reclaim could not clean up " + "; ".join(f"{m}: {w}" for m, w in failed.items()))
