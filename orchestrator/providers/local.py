"""The local dev box as a provider: a machine is a fresh run directory under ``$ORCHESTRATE_HOME/machines``.

Terminating a local machine stops whatever process group its payload left running, then removes the
directory, so "the machine went away" means the same here as for a cloud VM.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.errors import ProviderError
from orchestrator.providers.base import Capability, LaunchRequest, Machine, MachineState
from orchestrator.remote.detached import PID_FILE

STATE_MAP = {"present": MachineState.RUNNING, "absent": MachineState.TERMINATED}


def group_alive(pgid: int) -> bool:
    """Tells whether any process of a process group is alive; zombies (exited, unreaped) do not count."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: fall back to the signal test, which counts zombies
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop_process_group(pid_file: Path, grace_s: float = 5.0) -> None:
    try:
        pgid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if not group_alive(pgid):
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


class LocalProvider:
    """Runs on this machine, in a per-run directory.

    Args:
        home: the Orchestrate home directory; machines live in ``home / "machines"``.
        python: the interpreter that runs the payload (default: this one, which has the payload extra).
    """

    name = "local"
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self, home: Path, python: str | None = None) -> None:
        self.root = home / "machines"
        self.python = python or sys.executable

    def _machine(self, run_id: str, launched_at: datetime) -> Machine:
        return Machine(
            id=run_id,
            provider=self.name,
            address="localhost",
            port=0,
            user=getpass.getuser(),
            workdir=str(self.root / run_id),
            launched_at=launched_at,
            private_address="127.0.0.1",
            extra={"python": self.python},
        )

    def launch(self, request: LaunchRequest) -> list[Machine]:
        """Creates the run directory; one local machine per run.

        Raises:
            ProviderError: more than one machine was asked for, or the directory already exists.
        """
        if request.count != 1:
            raise ProviderError(
                f"the local provider has one machine; received count={request.count}",
                hint="use --provider rented with several hosts for multi-machine runs",
            )
        path = self.root / request.run_id
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError as error:
            raise ProviderError(f"local machine directory already exists: {path}") from error
        except OSError as error:
            raise ProviderError(f"cannot create local machine directory {path}: {error}") from error
        path.chmod(0o700)
        return [self._machine(request.run_id, datetime.now(UTC))]

    def terminate(self, machines: Sequence[Machine]) -> None:
        """Stops any payload still running in each machine's directory, then removes the directory."""
        for machine in machines:
            path = self.root / machine.id
            _stop_process_group(path / PID_FILE)
            shutil.rmtree(path, ignore_errors=True)

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        """Lists the run directories that exist (one run's, or all)."""
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and (run_id is None or path.name == run_id):
                launched = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                found.append(self._machine(path.name, launched))
        return found
