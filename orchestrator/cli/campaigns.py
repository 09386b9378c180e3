"""`orchestrate sweep`: a campaign of runs from a sweep file (:mod:`orchestrator.campaign`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from orchestrator.cli.console import err, out
from orchestrator.cli.params import POSITIVE


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the matrix with its projected cost and time; run nothing.")
@click.option("--parallel", type=click.IntRange(1, 64), help="Cells run at once (default: the file's, else 1).")
@click.option("--budget", "budget_usd", type=POSITIVE, help="USD the campaign may spend (default: the file's).")
def sweep(file: Path, dry_run: bool, parallel: int | None, budget_usd: float | None) -> None:
    """Plan a campaign: machines × suites × params from a sweep file, under a budget.

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
      orchestrate sweep benchmarks/sweeps/dev-box.yaml --dry-run
      orchestrate sweep sweep.yaml --dry-run --budget 5 --parallel 4
    """
    from orchestrator.campaign import check_cell_params, load_sweep, plan_matrix
    from orchestrator.store import default_home

    sweep_spec = load_sweep(file)
    matrix = plan_matrix(sweep_spec, home=default_home(), budget_usd=budget_usd, parallel=parallel)
    check_cell_params(matrix)
    _print_matrix(sweep_spec.name, matrix)
    if not dry_run:
        err.print("[red]error:[/] running a campaign is not available yet: `orchestrate sweep FILE --dry-run` "
                  "plans it (each cell can be run with `orchestrate run`)")
        sys.exit(2)


def _print_matrix(name: str, matrix: object) -> None:
    from rich.table import Table

    from orchestrator.campaign import Matrix

    assert isinstance(matrix, Matrix)
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
