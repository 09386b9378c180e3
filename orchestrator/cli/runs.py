"""`orchestrate …`: parses arguments, calls :mod:`orchestrator.api`, renders with rich. No logic here."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.markup import escape

from orchestrator import __version__
from orchestrator.cli.argv import refuse_undecodable
from orchestrator.cli.campaigns import campaign, sweep
from orchestrator.cli.console import duration_text, err, json_text, money_text, out, print_listing, time_text
from orchestrator.cli.logs import logs
from orchestrator.cli.machines import breakeven, catalog, inventory
from orchestrator.cli.params import NON_NEGATIVE, POSITIVE
from orchestrator.cli.reports import report
from orchestrator.cli.shell import ssh
from orchestrator.errors import OrchestrateError, SpecError

# Commands import the control plane lazily: `orchestrate --help` takes 0.2 s (+0.2 s with orchestrator.api, +0.3 s
# with the run spec, +0.7 s with pandas; rich.table, rich.progress and providers.aws add 10 to 20 ms each).

STATE_STYLE = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
OUTCOME_MARK = {"ok": "[green]✓[/]", "failed": "[red]✗[/]", "interrupted": "[yellow]![/]", "skipped": "[dim]–[/]"}


class _Group(click.Group):
    """Turns every expected error into one line on stderr with the right exit code; never a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        kwargs["standalone_mode"] = False
        try:
            refuse_undecodable(self, kwargs.get("args") or (args[0] if args else None) or sys.argv[1:])
            return super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            click.echo(error.ctx.get_help() if error.ctx else "", err=True)
            sys.exit(2)
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx else "orchestrate"
            err.print(f"error: {escape(error.format_message())} (see `{command} --help`)")
            sys.exit(2)
        except click.exceptions.Abort:
            err.print("aborted")
            sys.exit(130)
        except OrchestrateError as error:
            _fail(error)
        except click.exceptions.Exit as error:
            sys.exit(error.exit_code)


def _fail(error: OrchestrateError) -> NoReturn:
    err.print(f"[red]error:[/] {escape(str(error))}")
    if error.hint:
        err.print(f"[dim]hint: {escape(error.hint)}[/]")
    sys.exit(error.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="orchestrate")
def cli() -> None:
    """Launch a GPU machine, run a Keras benchmark on it, price it, tear it down, and compare.

    \b
    Examples:
      orchestrate run --provider local --suite smoke
      orchestrate status
      orchestrate report --last 5 --format md
      orchestrate down r-20261128-180102-3fa9

    State lives in $ORCHESTRATE_HOME (default ~/.orchestrate).
    """


class _RunReporter:
    """Prints lifecycle steps and the payload's live log."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.started: dict[str, float] = {}
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def upload(self, host: str, sent: int, total: int) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        if self.progress is None:
            self.progress = Progress(
                TextColumn("  upload {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                console=out, transient=True,
            )
            self.progress.start()
        if host not in self.tasks:
            self.tasks[host] = self.progress.add_task(host, total=total)
        self.progress.update(self.tasks[host], completed=sent)

    def step(self, run_id: str, step: str, outcome: str, detail: str | None) -> None:
        if step == "push" and outcome != "start" and self.progress is not None:
            self.progress.stop()
            self.progress, self.tasks = None, {}
        if outcome == "start":
            self.started[step] = time.monotonic()
            if step == "execute":
                out.print("[bold]→ execute[/] [dim](payload log follows)[/]")
            return
        seconds = time.monotonic() - self.started.get(step, time.monotonic())
        mark = OUTCOME_MARK.get(outcome, outcome)
        text = f" {escape(detail)}" if detail else ""
        out.print(f"{mark} {step:<9} [dim]{seconds:6.1f} s[/]{text}")

    def output(self, text: str) -> None:
        if not self.quiet:
            for line in text.splitlines():
                out.print(f"  [dim]│[/] {escape(line)}")


@cli.command()
@click.option("-f", "--file", "file", type=click.Path(path_type=Path), help="Run spec YAML; flags override it.")
@click.option("--provider", "-p", help="Where to run: local, rented, aws or azure.")
@click.option("--suite", "-s", help="Suite name (smoke, …) or path to a suite YAML file.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override a suite param; repeatable.")
@click.option("--backend", type=click.Choice(["tensorflow", "jax", "torch"]), help="Keras backend for the payload.")
@click.option("--instance-type", help="Clouds: machine type to launch (the provider's name), e.g. g4dn.xlarge.")
@click.option("--region", help="Clouds: launch in this region only (default: every region the catalog prices).")
@click.option("--spot", is_flag=True, default=None, help="Clouds: spot capacity first, then on-demand.")
@click.option("--max-price", type=POSITIVE, help="Clouds, --spot: the most USD per hour to pay.")
@click.option("--image", metavar="IMAGE",
              help="Clouds: the image to boot: an AMI (ami-…) on aws, publisher:offer:sku:version on azure.")
@click.option("--allow-cidr", metavar="CIDR",
              help="Clouds: who may reach port 22 (default: this computer's public address alone).")
@click.option("--profile", metavar="NAME", help="AWS: a profile of ~/.aws/config (default: boto3's chain).")
@click.option("--count", type=int, help="Number of machines (the suite runs on each, in parallel).")
@click.option("--nodes", type=int, help="Machines that train one model together: --count N --multi-node.")
@click.option("--host", "hosts", multiple=True, metavar="NAME", help="Rented: this inventory box; repeatable.")
@click.option("--gpu", help="Any inventory box (rented) or instance type (clouds) with this GPU model.")
@click.option("--lease-wait", "wait_s", type=NON_NEGATIVE, help="Rented: seconds to wait for a busy box (default 0).")
@click.option("--reclaim", is_flag=True, default=None,
              help="Rented: free boxes held by runs whose orchestrator died (stops their payloads), not refuse.")
@click.option("--multi-node", is_flag=True, default=None, help="Train one model across the machines (TF_CONFIG).")
@click.option("--price-per-hour", type=NON_NEGATIVE,
              help="USD per machine-hour to price the run at (local box: default 0).")
@click.option("--timeout", "timeout_s", type=POSITIVE, help="Seconds the payload may run before it is killed.")
@click.option("--name", help="A label for reports.")
@click.option("--keep", is_flag=True, default=None, help="Leave the machine up (`orchestrate down` later).")
@click.option("--dry-run", is_flag=True, help="Print the plan and create nothing.")
@click.option("--quiet", "-q", is_flag=True, help="Do not echo the payload's log.")
@click.option("--run-id", hidden=True, help="The run's id, chosen by the campaign that starts it.")
@click.option("--watch-parent", type=click.IntRange(min=1), hidden=True,
              help="A campaign's pid: when it is gone, the run interrupts itself (and tears down).")
def run(
    file: Path | None,
    provider: str | None,
    suite: str | None,
    assignments: tuple[str, ...],
    backend: str | None,
    instance_type: str | None,
    region: str | None,
    spot: bool | None,
    max_price: float | None,
    image: str | None,
    allow_cidr: str | None,
    profile: str | None,
    count: int | None,
    nodes: int | None,
    hosts: tuple[str, ...],
    gpu: str | None,
    wait_s: float | None,
    reclaim: bool | None,
    multi_node: bool | None,
    price_per_hour: float | None,
    timeout_s: float | None,
    name: str | None,
    keep: bool | None,
    dry_run: bool,
    quiet: bool,
    run_id: str | None,
    watch_parent: int | None,
) -> None:
    """Run a benchmark suite on a machine, record it, price it, and tear the machine down.

    \b
    Examples:
      orchestrate run --provider local --suite smoke
      orchestrate run --provider local --suite smoke --set epochs=3 --set batch_size=64
      orchestrate run -f run.yaml --keep
      orchestrate run --provider local --dry-run
      orchestrate run --provider rented --host lab-4090 --lease-wait 600
      orchestrate run --provider rented --gpu "RTX 4090" --count 2 --suite throughput
      orchestrate run --provider rented --host a --host b --suite scaling --multi-node
      orchestrate run --provider rented --host lab-4090 --reclaim
      orchestrate run --provider aws --instance-type g4dn.xlarge
      orchestrate run --provider aws --gpu T4 --spot --max-price 0.30 --profile research
      orchestrate run --provider aws --instance-type g5.xlarge --nodes 2 --suite scaling
      orchestrate run --provider azure --instance-type Standard_NC4as_T4_v3
      orchestrate run --provider azure --instance-type Standard_NC6 --dry-run

    Exit codes: 0 succeeded, 1 failed, 2 bad input, 130 interrupted.
    """
    from orchestrator import api
    from orchestrator.spec import build_run_spec, parse_assignment

    params = dict(parse_assignment(text) for text in assignments) or None
    if nodes is not None:
        if not 1 <= nodes <= 64:
            raise SpecError("--nodes", nodes, "1 to 64 machines")
        if count is not None and count != nodes:
            raise SpecError("--count", count, f"{nodes}, as --nodes says (or leave --count out)")
        count, multi_node = nodes, True
    machine_flags = {"instance_type": instance_type, "region": region, "spot": spot, "max_price": max_price,
                     "image": image, "allow_cidr": allow_cidr, "count": count, "price_per_hour": price_per_hour,
                     "hosts": list(hosts) or None, "gpu": gpu, "wait_s": wait_s, "reclaim": reclaim,
                     "profile": profile}
    machine = {key: value for key, value in machine_flags.items() if value is not None} or None
    spec = build_run_spec(
        file,
        {"provider": provider, "suite": suite, "params": params, "machine": machine, "backend": backend,
         "timeout_s": timeout_s, "name": name, "keep": keep, "multi_node": multi_node},
    )
    if dry_run:
        _print_plan(api.plan(spec))
        return
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        raise SpecError("--run-id", run_id, "r-YYYYMMDD-HHMMSS-xxxx (4 hex digits)")
    if watch_parent is not None:
        _watch_parent(watch_parent)
    outcome = api.run(spec, reporter=_RunReporter(quiet), run_id=run_id)
    style = STATE_STYLE.get(outcome.state, "")
    out.print(
        f"\nrun [bold]{outcome.run_id}[/] [{style}]{outcome.state}[/] in {outcome.duration_s:.1f} s, "
        f"cost ${outcome.cost_usd:.4f}"
    )
    if outcome.state != "succeeded":
        if outcome.log_tail and outcome.state == "failed":
            err.print("[dim]payload log (last lines):[/]")
            err.print(escape(outcome.log_tail.rstrip()))
        err.print(f"[red]error:[/] {escape(outcome.error or outcome.state)}")
        if outcome.hint:
            err.print(f"[dim]hint: {escape(outcome.hint)}[/]")
        sys.exit(130 if outcome.state == "interrupted" else 1)
    if spec.suite == "deploy":
        _print_tradeoffs(outcome.run_id)
    out.print(f"[dim]report: orchestrate report {outcome.run_id}[/]")


_RUN_ID = re.compile(r"r-\d{8}-\d{6}-[0-9a-f]{4}")


def _watch_parent(pid: int) -> None:
    """Interrupts this run (SIGTERM: it tears down and records) once process ``pid`` is no longer its parent: the
    campaign that started it died. Checked twice a second by a daemon thread."""

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != pid:
        raise SpecError("--watch-parent", pid, "the pid of this process's parent")
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _print_tradeoffs(run_id: str) -> None:
    """Prints the deploy suite's trade-off table of a run (one row per model variant)."""
    from orchestrator import api
    from orchestrator.report.deploy import tradeoff_frame, tradeoff_table

    samples, _ = api.report_frames([run_id])
    frame = tradeoff_frame(samples).drop(columns=["run_id"])
    if frame["host"].nunique() <= 1:  # one machine: its name says nothing
        frame = frame.drop(columns=["host"])
    if frame.empty:
        out.print("[yellow]the run wrote no deploy samples[/]")
        return
    out.print(tradeoff_table(frame))


def _abandoned_hint(run_id: str) -> str:
    return (f"[yellow]abandoned: the orchestrator that ran it is gone; its machines may still be up: "
            f"`orchestrate down {run_id}`[/]")


def _state_text(run: Any) -> str:
    """A run's state for the terminal; a run whose orchestrator died says so beside the state it was left in."""
    style = STATE_STYLE.get(run.state)  # provisioning has none: no empty "[]" tag (rich refuses it)
    text = f"[{style}]{run.state}[/]" if style else run.state
    return f"{text} [red]abandoned[/]" if run.abandoned else text


def _print_plan(plan: Any) -> None:
    spec = plan.spec
    out.print("[bold]plan[/] (dry run: nothing is created)")
    out.print(f"  provider   {spec.provider}")
    together = " (one training across them: --multi-node)" if spec.multi_node and plan.count > 1 else ""
    out.print(f"  machines   {plan.count} × {escape(plan.placements[0].describe())}{together}")
    for line in plan.choices:
        out.print(f"             {escape(line)}")
    if plan.image:
        out.print(f"  image      {escape(plan.image)}")
    out.print(f"  suite      {plan.suite.name}: {escape(plan.suite.description)}")
    out.print("  params     " + ", ".join(f"{k}={v}" for k, v in plan.params.items()))
    out.print(f"  backend    {spec.backend}; timeout {spec.timeout_s:g} s; keep={spec.keep}")
    out.print("  steps      " + " → ".join(plan.steps))
    out.print(f"  estimate   ~{plan.estimated_duration_s:.0f} s, ~${plan.estimated_cost_usd:.4f}")
    for text in plan.warnings:
        out.print(f"  [yellow]warning[/]    {escape(text)}")


@cli.command()
@click.argument("run_id", metavar="[RUN]", required=False)
@click.option("--last", type=click.IntRange(min=1), help="Only the newest N runs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(run_id: str | None, last: int | None, as_json: bool) -> None:
    """List runs, or show one run's event timeline.

    \b
    Examples:
      orchestrate status
      orchestrate status --last 5
      orchestrate status r-20261128-180102-3fa9     (a unique prefix is enough)
    """
    from rich.table import Table

    from orchestrator import api

    if run_id is None:
        runs = api.list_runs(last=last)
        print_listing(runs, as_json=as_json, record=asdict, title="runs",
                      empty="no runs yet: try `orchestrate run --provider local --suite smoke`",
                      columns=("id", "state", "provider", "suite", "started", "duration", "cost"),
                      right=("duration", "cost"),
                      cells=lambda r: (r.id, _state_text(r), r.provider, r.suite, time_text(r.created_at),
                                       duration_text(r.duration_s), money_text(r.cost_usd)))
        if not as_json and any(r.abandoned for r in runs):
            out.print(_abandoned_hint("RUN") + " [yellow](or --all)[/]")
        return
    detail = api.run_detail(run_id)
    if as_json:
        document = asdict(detail)
        # Each cost line names its run, as the store's rows always have in this document.
        document["costs"] = [{"run_id": detail.run.id, **line} for line in document["costs"]]
        click.echo(json_text(document))
        return
    r = detail.run
    out.print(f"[bold]{r.id}[/] {_state_text(r)}  provider {r.provider}, suite {r.suite}, "
              f"started {time_text(r.created_at)}, duration {duration_text(r.duration_s) or '-'}, "
              f"cost {money_text(r.cost_usd)}")
    if r.abandoned:
        out.print(_abandoned_hint(r.id))
    table = Table(title="events")
    for column in ("step", "started", "seconds", "outcome", "detail"):
        table.add_column(column, justify="right" if column == "seconds" else "left", overflow="fold")
    for e in detail.events:
        seconds = ""
        if e.ended_at:
            elapsed = datetime.fromisoformat(e.ended_at) - datetime.fromisoformat(e.started_at)
            seconds = f"{elapsed.total_seconds():.2f}"
        table.add_row(e.step, e.started_at[11:23], seconds, OUTCOME_MARK.get(e.outcome or "", e.outcome or "running"),
                      escape(e.detail or ""))
    out.print(table)
    cost_by_machine: dict[str, float] = {}
    for line in detail.costs:
        cost_by_machine[line.machine_id] = cost_by_machine.get(line.machine_id, 0.0) + line.amount_usd
    for m in detail.machines:
        where = f" {m.machine.placement.describe()}" if m.machine is not None else ""
        cost = f", ${cost_by_machine[m.machine_id]:.4f}" if m.machine_id in cost_by_machine else ""
        out.print(f"machine {m.machine_id or '(none launched)'} (attempt {m.attempt}){escape(where)}: {m.state}{cost}")
    if r.error:
        out.print(f"[red]error:[/] {escape(r.error)}")
    if r.log_tail:
        out.print("[dim]payload log (last lines):[/]")
        out.print(escape(r.log_tail.rstrip()))


@cli.command()
@click.argument("run_ids", metavar="[RUN]...", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every run that still has a machine up.")
@click.option("--profile", metavar="NAME", help="AWS: this profile (default: each run's own, else boto3's chain).")
@click.option("--forget", is_flag=True,
              help="Give up the remote clean-up of the named runs' machines (a box rebuilt with another host key, or "
                   "one that never answers): nothing connects to them. A rented box or the dev box is released and "
                   "recorded forgotten (its run directory, and any payload still running, stay on it); a cloud "
                   "machine is still terminated. Only with RUN ids, not --all.")
def down(run_ids: tuple[str, ...], everything: bool, profile: str | None, forget: bool) -> None:
    """Tear down the machines a run left up (after --keep, or a crash).

    A box that refuses its clean-up (another host key than the one pinned, or no answer) keeps its lease and stays
    held by the run; `--forget` gives that clean-up up, run by run.

    \b
    Examples:
      orchestrate down r-20261128-180102-3fa9
      orchestrate down --all
      orchestrate down --all --profile research
      orchestrate down r-20261128-180102-3fa9 --forget
    """
    from orchestrator import api

    if profile is not None:
        from orchestrator.providers.aws.profiles import check_profile

        check_profile(profile)
    results = api.down(run_ids, everything=everything, profile=profile, forget=forget)
    failed = False
    for result in results:
        cost = "" if result.cost_usd is None else f", cost ${result.cost_usd:.4f}"
        state = f" → {result.state}" if result.state else ""
        if result.gone or not result.failed or result.forgotten:
            out.print(f"{result.run_id}{state}: terminated {len(result.gone)} machine(s)"
                      + (": " + ", ".join(result.gone) if result.gone else "") + cost)
        for machine_id, left in result.forgotten.items():
            out.print(f"[yellow]forgotten:[/] {result.run_id}: {machine_id} released without its clean-up; "
                      f"{escape(left)} may still be there")
        for machine_id, why in result.failed.items():
            failed = True
            hint = f" (to give it up: orchestrate down {result.run_id} --forget)" \
                if why.startswith("clean-up failed") and not forget else ""
            err.print(f"[red]error:[/] {result.run_id}: {machine_id} not cleaned up: {escape(why)}{hint}")
    if not results:
        out.print("nothing to tear down")
    if failed:
        sys.exit(1)


for command in (report, inventory, catalog, breakeven, logs, ssh, sweep, campaign):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
