"""`orchestrate sweep`: a campaign of runs from a sweep file (:mod:`orchestrator.campaign`)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from orchestrator.cli.console import (
    check_output,
    err,
    json_text,
    out,
    print_listing,
    print_tables,
    time_text,
    write_output,
)
from orchestrator.cli.params import POSITIVE

if TYPE_CHECKING:
    from orchestrator.campaign import Matrix
    from orchestrator.store.campaigns import CampaignRow

# Commands import the campaign code lazily: `orchestrate --help` takes 0.2 s (+0.4 s with the campaign package,
# +0.7 s with the report stack's pandas, +10 ms with rich.table).


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the matrix with its projected cost and time; run nothing.")
@click.option("--parallel", type=click.IntRange(1, 64), help="Cells run at once (default: the file's, else 1).")
@click.option("--budget", "budget_usd", type=POSITIVE, help="USD the campaign may spend (default: the file's).")
@click.option("--resume", is_flag=True,
              help="Continue the unfinished campaign of this file's name: finished cells are kept, the machines of "
                   "cells left running are cleaned up, the rest run.")
@click.option("--retry-failed", is_flag=True, help="With --resume: run the cells that failed again too.")
def sweep(file: Path, dry_run: bool, parallel: int | None, budget_usd: float | None, resume: bool,
          retry_failed: bool) -> None:
    """Run a campaign: machines × suites × params from a sweep file, in parallel, under a budget.

    Each cell is one run (`orchestrate run`), recorded with the campaign; a failed cell is recorded and the
    campaign goes on. No cell starts that would take the spent total (billed cost of running cells included)
    over the budget. Ctrl-C interrupts the running cells (each tears down); --resume continues.

    \b
    A sweep file:
      name: t4-vs-a10g
      suites: [throughput]
      machines:
        - {provider: aws, instance_type: g4dn.xlarge}
        - {provider: aws, instance_type: g5.xlarge}
        - {provider: rented, host: lab-4090}
      params:
        batch_sizes: [32, 64, 128]
        precisions: [float32, mixed_float16]
      exclude:
        - {provider: rented, precisions: float32}
      parallel: 2
      budget_usd: 20

    \b
    Examples:
      orchestrate sweep benchmarks/sweeps/dev-box.yaml
      orchestrate sweep sweep.yaml --dry-run --budget 5 --parallel 4
      orchestrate sweep sweep.yaml --resume
      orchestrate campaign report dev-box --format html -o campaign.html

    Exit codes: 0 every cell ran or was left out by the budget, 1 a cell failed, 2 bad input, 130 interrupted.
    """
    from orchestrator.store import default_home

    if retry_failed and not resume:
        raise click.UsageError("--retry-failed goes with --resume")
    if dry_run and resume:
        raise click.UsageError("--dry-run plans the whole file; leave out --resume")
    if dry_run:
        from orchestrator.campaign import check_cell_params, load_sweep, plan_matrix

        sweep_spec = load_sweep(file)
        matrix = plan_matrix(sweep_spec, home=default_home(), budget_usd=budget_usd, parallel=parallel)
        check_cell_params(matrix)
        _print_matrix(sweep_spec.name, matrix)
        return
    from orchestrator.campaign.runner import run_campaign
    from orchestrator.cli.campaign_views import CampaignDisplay, print_outcome

    reporter = CampaignDisplay(live=out.is_terminal)
    try:
        outcome = run_campaign(file, home=default_home(), reporter=reporter, budget_usd=budget_usd,
                               parallel=parallel, resume=resume, retry_failed=retry_failed)
    finally:
        reporter.close()
    print_outcome(outcome)
    if outcome.state == "interrupted" and outcome.stopped_by != "budget":
        sys.exit(130)
    if outcome.counts.get("failed") or (outcome.counts.get("interrupted") and outcome.stopped_by != "budget"):
        sys.exit(1)


def _print_matrix(name: str, matrix: Matrix) -> None:
    from rich.table import Table

    table = Table(title=f"campaign {escape(name)} (dry run: nothing is created)")
    for column in ("#", "cell", "where", "suite and params", "est. s", "est. $", "budget"):
        table.add_column(column, justify="right" if column in ("#", "est. s", "est. $") else "left")
    for index, planned in enumerate(matrix.cells, 1):
        values = ", ".join(f"{k}={v}" for k, v in planned.cell.values.items())
        table.add_row(str(index), planned.cell.id, escape(planned.choice), escape(values),
                      f"{planned.duration_s:.0f}", f"{planned.cost_usd:.4f}",
                      "yes" if planned.within_budget else "[yellow]left out[/]")
    out.print(table)
    left_out = len(matrix.cells) - len(matrix.selected)
    budget = f" of a ${matrix.budget_usd:g} budget" if matrix.budget_usd is not None else ""
    out.print(f"{len(matrix.selected)} cell(s) to run ({matrix.excluded} excluded by rules, {left_out} left out by "
              f"the budget): ~${matrix.cost_usd:.4f}{budget}, ~{matrix.wall_s:.0f} s with --parallel "
              f"{matrix.parallel}")
    for warning in matrix.warnings:
        out.print(f"[yellow]warning[/] {escape(warning)}")


@click.group()
def campaign() -> None:
    """Campaigns that `orchestrate sweep` ran: list them, show one's cells, report on it.

    \b
    Examples:
      orchestrate campaign list
      orchestrate campaign status dev-box
      orchestrate campaign report dev-box --format html -o campaign.html
    """


@campaign.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_campaigns(as_json: bool) -> None:
    """List the campaigns, oldest first.

    \b
    Examples:
      orchestrate campaign list
      orchestrate campaign list --json
    """
    from orchestrator.campaign.views import campaign_progress, campaigns
    from orchestrator.cli.campaign_views import state_counts

    def cells(row: CampaignRow) -> tuple[str, ...]:
        progress = campaign_progress(row.id)
        state = f"{row.state} [red]abandoned[/] (--resume)" if row.abandoned else row.state
        return (row.id, escape(row.name), state, time_text(row.created_at), state_counts(progress),
                f"${progress.spent_usd:.4f}", "" if row.budget_usd is None else f"${row.budget_usd:g}")

    print_listing(campaigns(), as_json=as_json, title="campaigns",
                  record=lambda row: {**asdict(row), "progress": asdict(campaign_progress(row.id))},
                  empty="no campaigns yet: try `orchestrate sweep benchmarks/sweeps/dev-box.yaml`",
                  columns=("id", "name", "state", "started", "cells", "spent", "budget"), right=("spent", "budget"),
                  cells=cells)


@campaign.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def campaign_status(name: str, as_json: bool) -> None:
    """Show a campaign's cells: state, machine, elapsed, cost (NAME: its name, for the newest, or an id).

    \b
    Examples:
      orchestrate campaign status dev-box
      orchestrate campaign status c-20261130-151002-3fa9 --json
    """
    from orchestrator.campaign.views import campaign_progress, find_campaign
    from orchestrator.cli.campaign_views import cells_table

    row = find_campaign(name)
    progress = campaign_progress(row.id)
    if as_json:
        click.echo(json_text({**asdict(row), "progress": asdict(progress)}))
        return
    state = f"{row.state}, abandoned: its orchestrator is gone (orchestrate sweep FILE --resume)" if row.abandoned \
        else row.state
    out.print(cells_table(progress, title=f"campaign {escape(row.name)} ({row.id}): {escape(state)}"))


@campaign.command("report")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json", "html"]), default="table",
              show_default=True, help="Output format; html (one self-contained file: heat-maps, curves) needs -o.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to a file instead of the terminal.")
def campaign_report(name: str, fmt: str, output: Path | None) -> None:
    """Report a campaign: the best configuration per provider and overall by images per dollar and by cost to the
    target accuracy, then every cell with its figures (NAME: its name, for the newest, or an id).

    \b
    Examples:
      orchestrate campaign report dev-box
      orchestrate campaign report dev-box --format md
      orchestrate campaign report gpu-seed --format csv -o cells.csv
      orchestrate campaign report dev-box --format html -o campaign.html
    """
    from orchestrator.campaign.views import campaign_report as report_of
    from orchestrator.report.campaign import campaign_tables, render_campaign_html, render_campaign_text

    if fmt == "html" and output is None:
        raise click.UsageError("--format html writes a file: give its path with -o, e.g. -o campaign.html")
    if output is not None:
        check_output(output)
    row, frame, best, samples = report_of(name)
    if fmt == "html":
        assert output is not None
        output.write_text(render_campaign_html(row.name, frame, best, samples), encoding="utf-8")
        err.print(f"wrote {output}")
        return
    if fmt == "table":
        print_tables(campaign_tables(row.name, frame, best), output)
        return
    write_output(render_campaign_text(frame, best, fmt), output)
