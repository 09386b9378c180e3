"""What every cloud fake needs to make its machines reachable: a loopback sshd per launch that presents the host key
the run injected through cloud-init and accepts the run's client key (in-process: :class:`LoopbackCloud`), a thread
that does the same for machines another process launches (:class:`Watcher`), the run file that has a command-line run
use such a box (:func:`image_spec`), and the failure injection shared by the whole-run tests of each cloud
(:func:`break_step`)."""

from __future__ import annotations

import getpass
import json
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from orchestrator.machine import Capability, LaunchRequest, Machine
from orchestrator.providers.keys import KEY_FILE, SSHEndpoint, key_dir
from orchestrator.remote.session import Session

CIDR = "203.0.113.7/32"  # the allowed CIDR a contract-suite request leaves out
POLL_S = 0.2


def write_host_key(cloud_config: str | None, path: Path) -> Path:
    """Writes the host key a ``#cloud-config`` installs (its ``ssh_keys``): private 0600, ``.pub`` beside it."""
    assert cloud_config is not None and cloud_config.startswith("#cloud-config\n"), (cloud_config or "")[:80]
    keys = yaml.safe_load(cloud_config)["ssh_keys"]
    path.touch(mode=0o600)
    path.write_text(keys["ed25519_private"])
    path.with_name(path.name + ".pub").write_text(keys["ed25519_public"] + "\n")
    return path


def client_key_of(home: Path, run_id: str) -> Path:
    """The run's private client key (its ``.pub`` beside it) under an Orchestrate home."""
    return key_dir(home, run_id) / KEY_FILE


def on_box(machines: Sequence[Machine], box: Path, *, prepare: Literal["image"] | None = None) -> list[Machine]:
    """The machines as a loopback box plays them: this venv's Python, ``box`` as the work directory."""
    def environment(machine: Machine) -> Any:
        changed = replace(machine.environment, python=sys.executable, workdir=str(box))
        return replace(changed, prepare=prepare) if prepare else changed

    return [replace(m, environment=environment(m), run_dir=str(box / "runs" / m.run_id)) for m in machines]


def image_spec(tmp_path: Path, **environment: str) -> tuple[Path, Path]:
    """For a run from the command line, what :func:`on_box` does in-process: a run file (``image.yaml``) whose "image"
    runs the payload with this venv's Python in ``tmp_path / "box"``, and ``environment``'s other fields.

    Returns:
        The box (the machine's work directory) and the run file.
    """
    box, spec = tmp_path / "box", tmp_path / "image.yaml"
    fields = {**environment, "python": sys.executable, "workdir": str(box)}
    spec.write_text(f"machine:\n  environment: {json.dumps(fields)}\n")
    return box, spec


class LoopbackCloud(ABC):
    """A cloud provider whose launches are each served by a loopback sshd presenting the run's host key.

    Subclasses say where the machine's cloud-config is read back (:meth:`cloud_config`) and may complete what a
    contract-suite request leaves out (:meth:`completed`).
    """

    def __init__(self, provider: Any, directory: Path, start: Callable[..., Any]) -> None:
        self.provider = provider
        self.name: str = provider.name
        self.capabilities: frozenset[Capability] = provider.capabilities
        self.directory = directory
        self.start = start  # start_server-like: (directory, client_key, host_key_path, port=…, authorized_key=…)
        self.servers: list[Any] = []

    def completed(self, request: LaunchRequest) -> LaunchRequest:
        """The request with what the contract suite leaves out (the allowed CIDR)."""
        return replace(request, allowed_cidr=request.allowed_cidr or CIDR)

    @abstractmethod
    def cloud_config(self, machine: Machine) -> str | None:
        """The user-data the machine was launched with, as the cloud keeps it."""

    def launch(self, request: LaunchRequest) -> list[Machine]:
        from tests.integration.conftest import free_port

        port = free_port()
        self.provider.ssh_endpoint = SSHEndpoint("127.0.0.1", port, getpass.getuser())
        machines: list[Machine] = self.provider.launch(self.completed(request))
        where = self.directory / f"{request.run_id}-{port}"
        where.mkdir(parents=True)
        host_key = write_host_key(self.cloud_config(machines[0]), where / "host_key")
        key = client_key_of(self.provider.home, request.run_id)
        self.servers.append(self.start(where / "sshd", key, host_key, port=port, authorized_key=key))
        return machines

    def terminate(self, run_id: str, machines: Sequence[Machine] = ()) -> None:
        self.provider.terminate(run_id, machines)

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        listed: list[Machine] = self.provider.list_machines(run_id=run_id)
        return listed

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class Watcher(ABC):
    """Serves, on one loopback port, the newest machine another process launched, as that machine would: its
    injected host key, the run's client key. When the machine is gone its sshd stops, so the next run's machine can
    have the port. Subclasses list the live machines (:meth:`live`)."""

    def __init__(self, home: Path, port: int, directory: Path, *, name: str) -> None:
        self.home = home
        self.port = port
        self.directory = directory
        self.served: dict[str, Any] = {}  # machine id → its sshd (one at a time holds the port)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @abstractmethod
    def live(self) -> list[tuple[str, str, Callable[[], str | None]]]:
        """The live machines, oldest first: (id, run id, a reader of its cloud-config)."""

    def start(self) -> Watcher:
        """Starts watching in a thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops watching and every sshd it started."""
        self._stop.set()
        self._thread.join(timeout=10)
        for server in self.served.values():
            server.stop()

    def serve_until_interrupted(self, *also: Callable[[], None]) -> None:
        """For a person at a terminal: reports errors as they come; Ctrl-C stops it (and calls ``also``)."""
        try:
            while True:
                time.sleep(1)
                while self.errors:
                    print(self.errors.pop(0), flush=True)
        except KeyboardInterrupt:
            self.stop()
            for stop in also:
                stop()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self._tick()
            except Exception as error:  # noqa: BLE001 - a watcher thread reports, it does not die
                self.errors.append(f"{type(error).__name__}: {error}")

    def _tick(self) -> None:
        from tests.integration.conftest import start_server

        live = self.live()
        ids = {machine_id for machine_id, _, _ in live}
        for gone in [i for i in self.served if i not in ids]:
            self.served.pop(gone).stop()  # that machine is gone: so is its sshd, and the port is free
        if self.served or not live:
            return
        machine_id, run_id, cloud_config = live[-1]
        key = client_key_of(self.home, run_id)
        if not key.with_name(key.name + ".pub").exists():
            return  # not yet written (or another home's run): look again at the next poll
        where = self.directory / machine_id.rsplit("/", 1)[-1]
        where.mkdir(parents=True, exist_ok=True)
        host_key = write_host_key(cloud_config(), where / "host_key")
        self.served[machine_id] = start_server(where / f"sshd-{time.monotonic_ns()}", key, host_key, port=self.port,
                                               authorized_key=key)


def break_step(monkeypatch: pytest.MonkeyPatch, loopback: LoopbackCloud, step: str) -> None:
    """Makes one lifecycle step raise ``RuntimeError("injected failure in STEP")``; for provision, after the machine
    exists (as when waiting for it breaks)."""
    def broken(*args: object, **kwargs: object) -> Any:
        raise RuntimeError(f"injected failure in {step}")

    if step == "provision":
        launch = loopback.launch

        def launch_then_fail(request: LaunchRequest) -> list[Machine]:
            launch(request)
            raise RuntimeError("injected failure in provision")

        monkeypatch.setattr(loopback, "launch", launch_then_fail)
        return
    method = {"connect": "open_run_dir", "prepare": "prepare", "push": "push", "execute": "start",
              "collect": "collect"}[step]
    monkeypatch.setattr(Session, method, broken)
