"""`orchestrate logs RUN [--follow]`: a run's payload log, from the store or live from its machines.

Registered on the main group in :mod:`orchestrator.cli.runs`; thin over :func:`orchestrator.api.logs`.
"""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from orchestrator.cli.console import err

# The command imports orchestrator.api lazily: `orchestrate --help` takes 0.2 s (0.4 s with it).


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--follow", "-f", is_flag=True, help="Keep reading a running payload's log until it ends (Ctrl-C stops).")
@click.option("--machine", metavar="NAME", help="Only this machine's log (a run on several machines).")
def logs(run_id: str, follow: bool, machine: str | None) -> None:
    """Show a run's payload log: the stored log after the run ended, read live from its machines while it runs.

    With several machines, each line starts with [machine]. Notes (where the log comes from, what was cut) go to
    stderr, the log itself to stdout.

    \b
    Examples:
      orchestrate logs r-20261128-180102-3fa9
      orchestrate logs r-20261128-180102 --follow
      orchestrate logs r-20261128-180102-3fa9 --machine box1 > box1.log
    """
    from orchestrator import api

    try:
        for piece in api.logs(run_id, follow=follow, machine=machine):
            if isinstance(piece, api.LogNote):
                err.print(f"[dim]{escape(piece.text)}[/]")
            else:
                click.echo(piece.text, nl=False)
    except KeyboardInterrupt:
        sys.exit(130)
