"""Azure for tests: the ARM fake (:mod:`tests.fakes.arm`) served on loopback, the real provider pointed at it, and
loopback sshd servers that play its VMs with the host key the run injected through cloud-init.

``arm`` is a fixture (import it into a conftest or test module): a started :class:`ArmFake` and the environment that
points ``orchestrate`` (in-process or a subprocess) at it. :class:`LoopbackAzure` wraps an :class:`AzureProvider` so
that every launch is reachable (the contract suite, lifecycle tests); :class:`VmServer` does the same across processes
by watching the fake (the CLI tests, and ``python -m tests.fakes.azure`` for a person at a terminal).
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from orchestrator.clouds.azure import CLOUD_ENV, SUBSCRIPTION_ENV, AzureSettings
from orchestrator.machine import LaunchRequest, Machine
from orchestrator.providers.azure.vm import RUN_TAG, AzureProvider
from tests.fakes.arm import ArmFake
from tests.fakes.loopback import CIDR as CIDR
from tests.fakes.loopback import LoopbackCloud, Watcher, on_box

REGION = "eastus"


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ArmFake]:
    """A started ARM fake; the environment names it as the cloud (``ORCHESTRATE_AZURE_CLOUD``) and its
    subscription, so the provider made by the registry (and a CLI subprocess) reaches it."""
    fake = ArmFake().start()
    point_at(monkeypatch, fake)
    try:
        yield fake
    finally:
        fake.stop()


def point_at(monkeypatch: pytest.MonkeyPatch, fake: ArmFake) -> None:
    """Names ``fake`` as the Azure cloud and its subscription in the environment, and no SSH endpoint."""
    monkeypatch.setenv(CLOUD_ENV, fake.url)
    monkeypatch.setenv(SUBSCRIPTION_ENV, fake.subscription)
    monkeypatch.delenv("ORCHESTRATE_AZURE_SSH_ENDPOINT", raising=False)


def provider_for(fake: ArmFake, home: Path, **options: Any) -> AzureProvider:
    """The real provider against the fake, polling fast (the fake's Retry-After still rules when it sends one)."""
    settings = AzureSettings(fake.subscription, fake.url, "")
    return AzureProvider(home, settings, polling_interval=0.05, sleep=lambda s: None, **options)


class LoopbackAzure(LoopbackCloud):
    """An AzureProvider whose launches are each served by a loopback sshd presenting the run's host key."""

    def __init__(self, provider: AzureProvider, fake: ArmFake, directory: Path, start: Callable[..., Any]) -> None:
        super().__init__(provider, directory, start)
        self.fake = fake

    def cloud_config(self, machine: Machine) -> str | None:
        return self.fake.custom_data(machine.id)


class LoopbackAzureBox(LoopbackAzure):
    """The loopback sshd plays an image with Keras: its Python is this venv's, its home a test directory."""

    def launch(self, request: LaunchRequest) -> list[Machine]:
        return on_box(super().launch(request), self.directory / "box", prepare="image")


class VmServer(Watcher):
    """Serves the newest VM of the fake (one whose creation succeeded, tagged by Orchestrate) on ``127.0.0.1:port``
    as that VM would, until :meth:`stop`."""

    def __init__(self, fake: ArmFake, home: Path, port: int, directory: Path) -> None:
        super().__init__(home, port, directory, name="azure-loopback")
        self.fake = fake

    def live(self) -> list[tuple[str, str, Callable[[], str | None]]]:
        vms = [r for r in self.fake.resources() if r.get("type") == "Microsoft.Compute/virtualMachines"
               and r.get("properties", {}).get("provisioningState") == "Succeeded"
               and RUN_TAG in (r.get("tags") or {})]
        return [(vm["id"], vm["tags"][RUN_TAG], partial(self.fake.custom_data, vm["name"])) for vm in vms]


def main() -> None:
    """An ARM fake and a VM server until Ctrl-C: `orchestrate run --provider azure` from another terminal."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("ORCHESTRATE_HOME", "~/.orchestrate")))
    parser.add_argument("--port", type=int, required=True, help="the port of ORCHESTRATE_AZURE_SSH_ENDPOINT")
    parser.add_argument("--directory", type=Path, default=Path("/tmp/orchestrate-azure-loopback"))
    args = parser.parse_args()
    fake = ArmFake().start()
    server = VmServer(fake, args.home.expanduser(), args.port, args.directory).start()
    print(f"export {CLOUD_ENV}={fake.url} {SUBSCRIPTION_ENV}={fake.subscription} "
          f"ORCHESTRATE_AZURE_SSH_ENDPOINT={getpass.getuser()}@127.0.0.1:{args.port}", flush=True)
    server.serve_until_interrupted(fake.stop)


if __name__ == "__main__":
    main()
