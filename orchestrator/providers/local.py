"""The local dev box as a provider: a machine is a fresh run directory under ``$ORCHESTRATE_HOME/machines``.

Launching makes the directory; terminating removes it. Stopping a payload that still runs there is the run's
remote clean-up (:func:`orchestrator.remote.session.clean_up`), not the provider's.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.errors import ProviderError
from orchestrator.machine import (
    Access,
    Capability,
    Environment,
    LaunchRequest,
    Machine,
    MachineState,
    Placement,
)

STATE_MAP = {"present": MachineState.RUNNING, "absent": MachineState.TERMINATED}
LOCAL_ID = "localhost"


class LocalProvider:
    """Runs on this machine, in a per-run directory.

    Args:
        home: the Orchestrate home directory; machines live in ``home / "machines"``.
        python: the interpreter that runs the payload (default: this one, which has the payload extra).
    """

    name = "local"
    # Machines outlive the run: terminating gives the box back, so one whose clean-up failed is kept.
    capabilities: frozenset[Capability] = frozenset({Capability.REUSED})

    def __init__(self, home: Path, python: str | None = None, **_: object) -> None:
        self.home = home
        self.root = home / "machines"
        self.python = python or sys.executable

    def _machine(self, run_id: str, placement: Placement, launched_at: datetime, state: MachineState) -> Machine:
        return Machine(
            run_id=run_id, id=LOCAL_ID, provider=self.name, placement=placement, access=Access(via="local"),
            environment=Environment(prepare="image", python=self.python, workdir=str(self.home)),
            run_dir=str(self.root / run_id), launched_at=launched_at, state=state, private_address="127.0.0.1",
        )

    def launch(self, request: LaunchRequest) -> list[Machine]:
        """Creates the run directory; one local machine per run.

        Raises:
            ProviderError: more than one machine was asked for, or the directory cannot be made.
        """
        if request.count != 1:
            raise ProviderError(f"the local provider has one machine; received count={request.count}")
        path = self.root / request.run_id
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError as error:
            raise ProviderError(f"local machine directory already exists: {path}") from error
        except OSError as error:
            raise ProviderError(f"cannot create local machine directory {path}: {error}") from error
        path.chmod(0o700)
        return [self._machine(request.run_id, request.placement, datetime.now(UTC), MachineState.RUNNING)]

    def terminate(self, run_id: str, machines: Sequence[Machine] = ()) -> None:
        """Removes the run's directory (and those of the given machines)."""
        for path in {self.root / run_id, *(Path(m.run_dir) for m in machines)}:
            shutil.rmtree(path, ignore_errors=True)

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        """Lists the run directories that exist (one run's, or all)."""
        if not self.root.is_dir():
            return []
        placement = Placement(provider="local", instance_type="local")
        return [
            self._machine(path.name, placement, datetime.fromtimestamp(path.stat().st_mtime, UTC),
                          MachineState.RUNNING)
            for path in sorted(self.root.iterdir())
            if path.is_dir() and (run_id is None or path.name == run_id)
        ]
