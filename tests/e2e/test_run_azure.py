"""`orchestrate run --provider azure` from the command line, as a user types it: the real Azure SDK against the ARM
fake on loopback (``ORCHESTRATE_AZURE_CLOUD=http://127.0.0.1:PORT``, a documented testing setting), the VM's SSH
played by a loopback sshd presenting the host key the run injected (``ORCHESTRATE_AZURE_SSH_ENDPOINT``). The payload
is the real smoke suite (Keras training) run by this venv's Python, named by the run file's ``machine.environment``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli
from tests.e2e.cloud_cli import served, smoke_run
from tests.fakes import azure as azure_fakes
from tests.fakes.arm import ArmFake
from tests.fakes.azure import VmServer
from tests.integration.conftest import free_port
from tests.integration.conftest import sshd_binary as sshd_binary  # the fixture

arm = azure_fakes.arm  # the fixture
pytestmark = pytest.mark.slow
SIZE = "Standard_NC4as_T4_v3"


@pytest.fixture
def vms(home: Path, tmp_path: Path, arm: ArmFake, sshd_binary: Path) -> Iterator[dict[str, str]]:
    """The environment of a CLI run whose VMs a loopback sshd plays."""
    with served(VmServer(arm, home, free_port(), tmp_path / "vms"), "ORCHESTRATE_AZURE_SSH_ENDPOINT") as endpoint:
        yield endpoint


def test_a_smoke_run_on_azure_from_the_command_line_trains_and_leaves_no_group(
    home: Path, tmp_path: Path, arm: ArmFake, vms: dict[str, str]
) -> None:
    _, row = smoke_run(home, tmp_path, vms, "--provider", "azure", "--instance-type", SIZE, prepare="image")
    assert arm.groups() == [] and arm.resources() == []
    assert row["machine_type"] == SIZE
    # The plan named the default image; the NSG let SSH in from the given address only.
    puts = [path for method, path in arm.requests if method == "PUT"]
    assert any(path.endswith("/networksecuritygroups/nsg") for path in map(str.lower, puts))


def test_a_killed_azure_run_is_deleted_by_down_all_from_a_new_process(home: Path, arm: ArmFake) -> None:
    # Nothing answers SSH at this address: the run waits in connect, its VM up and billing.
    env = cli_env(home, ORCHESTRATE_AZURE_SSH_ENDPOINT=f"127.0.0.1:{free_port()}")
    run = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--provider", "azure", "--instance-type", SIZE,
         "--allow-cidr", "127.0.0.1/32"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
                r["type"] == "Microsoft.Compute/virtualMachines" for r in arm.resources()):
            time.sleep(0.2)
        assert arm.groups(), "the run never made its group"
        time.sleep(0.5)  # the VM's operation ends at its first poll
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    [group] = arm.groups()
    run_id = group["tags"]["orchestrate-run-id"]
    assert '"abandoned": true' in run_cli(home, "status", "--json").stdout
    down = run_cli(home, "down", "--all")
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"{run_id} → interrupted" in down.stdout
    assert arm.groups() == [] and arm.resources() == []
    assert not (home / "keys" / run_id).exists()
    again = run_cli(home, "down", "--all")
    assert again.returncode == 0 and "nothing to tear down" in again.stdout


def test_down_all_with_azure_unreachable_says_so_in_one_line_and_still_sweeps_the_rest(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATE_AZURE_CLOUD", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    down = run_cli(home, "down", "--all")
    assert down.returncode == 1
    errors = [line for line in down.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "(azure)" in errors[0] and "cannot reach" in errors[0], down.stderr
    assert "Traceback" not in down.stderr


def test_a_k80_size_dry_run_warns_it_is_retired_names_successors_and_shows_the_cost(home: Path, arm: ArmFake) -> None:
    result = run_cli(home, "run", "--provider", "azure", "--instance-type", "Standard_NC6", "--dry-run")
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stdout.splitlines() if "warning" in line]
    assert "Standard_NC6 was retired on 2023-09-06" in warning
    assert all(size in warning for size in ("Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4"))
    assert "estimate   ~160 s, ~$0.0" in result.stdout  # 160 s at $0.90/h, billed per full minute
    assert arm.requests == [] and not home.exists()  # a dry run asks Azure nothing and writes nothing


def test_azure_refusing_a_retired_size_is_one_line_with_its_date_and_successors(home: Path, arm: ArmFake) -> None:
    arm.fail("virtualMachines", "SkuNotAvailable",
             message="The requested VM size Standard_NC6 is not available in location 'eastus'.")
    result = run_cli(home, "run", "--provider", "azure", "--instance-type", "Standard_NC6",
                     "--allow-cidr", "127.0.0.1/32", "--quiet")
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "SkuNotAvailable" in error and "Standard_NC6 was retired on 2023-09-06" in error
    assert "Standard_NC4as_T4_v3" in error
    assert arm.groups() == []  # the attempt's group was deleted
