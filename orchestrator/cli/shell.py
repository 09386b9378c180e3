"""`orchestrate ssh RUN`: a shell (or one command) on a machine a run left up, with the run's pinned keys only."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import click

# The command imports orchestrator.api and the SSH code lazily: `orchestrate --help` takes 0.2 s (0.4 s with them).


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("run_id", metavar="RUN")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--node", type=click.IntRange(min=1), help="The run's Kth machine (1 = the first), when it has several.")
@click.option("--machine", "machine_id", metavar="NAME", help="The machine by its id (box name, instance id).")
def ssh(run_id: str, command: tuple[str, ...], node: int | None, machine_id: str | None) -> None:
    """Open a shell in the run directory of a machine a run left up (`--keep`), checking its pinned host key.

    Uses OpenSSH with the run's own key and only the host keys the store pinned (a machine presenting another key is
    refused); no ~/.ssh/config, no agent. A COMMAND after `--` runs there instead of a shell; the exit code is its.

    \b
    Examples:
      orchestrate ssh r-20261128-180102-3fa9
      orchestrate ssh r-20261128-180102-3fa9 --node 2
      orchestrate ssh r-20261128-180102-3fa9 -- tail -n 50 payload.log
    """
    from orchestrator import api
    from orchestrator.remote.shell import ssh_argv

    machine = api.machine_up(run_id, node=node, machine_id=machine_id)
    with tempfile.TemporaryDirectory(prefix="orchestrate-ssh-") as directory:
        argv = ssh_argv(machine, list(command), Path(directory) / "known_hosts")
        sys.exit(subprocess.call(argv))
