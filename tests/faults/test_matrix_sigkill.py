"""The fault matrix's SIGKILL cells: ``orchestrate run`` as a process, SIGKILLed while its payload runs (after the
payload wrote a sample), then ``orchestrate down --all`` from a new process, for each provider. Nothing of the run
may be left, the run is recorded interrupted (abandoned) with its cost, and the sample the payload wrote before the
kill should be in the store."""

from __future__ import annotations

import getpass
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from orchestrator.store import Store
from tests.conftest import cli_env, run_cli
from tests.fakes import aws as aws_fakes
from tests.fakes import azure as azure_fakes
from tests.faults.conftest import FACTS, Box
from tests.faults.injections import (
    LostResults,
    PayloadControl,
    cell_id,
    cells,
    cost_problems,
    process_alive,
    stored_samples,
)
from tests.integration.conftest import free_port

pytestmark = pytest.mark.slow

WAIT_S = 180.0  # bound on waiting for the run's payload to write its first sample
AZURE_SIZE = "Standard_NC4as_T4_v3"


@dataclass
class Launch:
    """How the CLI run of one provider is started, and what of it may be left."""

    args: list[str]
    env: dict[str, str]
    run_dirs: Path  # where the run directory is on the machine: run_dirs / run_id
    leftovers: Callable[[str], list[str]]


def _image(tmp_path: Path, box: Path, **extra: str) -> Path:
    """A run file whose machine environment is this venv's Python with ``box`` as the work directory."""
    spec = tmp_path / "image.yaml"
    spec.write_text(yaml.safe_dump({"machine": {"environment": {"python": sys.executable, "workdir": str(box),
                                                                **extra}}}))
    return spec


@pytest.fixture
def launch(request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> Iterator[Launch]:
    """The provider's CLI run and what it needs running beside it (sshd, moto, the ARM fake and their watchers)."""
    provider = request.node.callspec.params["cell"][0]
    if provider == "local":
        yield Launch(["--provider", "local"], {}, home / "machines", lambda run_id: [])
    elif provider == "rented":
        box: Box = request.getfixturevalue("rented_box")
        server = box.server
        home.mkdir(parents=True, exist_ok=True)
        (home / "inventory.yaml").write_text(yaml.safe_dump({"hosts": [{
            "name": "box0", "host": server.host, "port": server.port, "user": server.user,
            "key_path": str(server.client_key_path), "host_key": server.host_key, "price": {"per_hour": 1.5},
            "python": sys.executable, "workdir": str(tmp_path / "box")}]}))

        def leases(run_id: str) -> list[str]:
            with Store(home) as store:
                return [f"lease on {b}" for b, holder in store.leases().items() if holder == run_id]

        yield Launch(["--provider", "rented", "--host", "box0"], {}, tmp_path / "box" / "runs", leases)
    elif provider == "aws":
        from orchestrator.clouds import aws
        from tests.fakes.aws import IMAGE, REGION
        from tests.fakes.aws_loopback import InstanceServer

        env = request.getfixturevalue("moto_server")
        request.getfixturevalue("sshd_binary")
        port = free_port()
        server = InstanceServer(home, port, tmp_path / "instances").start()

        def instances(run_id: str) -> list[str]:
            ec2 = aws.client("ec2", region=REGION, endpoint_url=env["AWS_ENDPOINT_URL"])
            pages = ec2.describe_instances(Filters=[{"Name": "tag:orchestrate:run-id", "Values": [run_id]}])
            return ([f"instance {i['InstanceId']} {i['State']['Name']}" for r in pages["Reservations"]
                     for i in r["Instances"] if i["State"]["Name"] != "terminated"]
                    + [f"security group {g['GroupName']}" for g in ec2.describe_security_groups()["SecurityGroups"]
                       if run_id in g["GroupName"]]
                    + [f"key pair {k['KeyName']}" for k in ec2.describe_key_pairs()["KeyPairs"]
                       if run_id in k["KeyName"]])

        box_dir = tmp_path / "box"
        try:
            yield Launch(["-f", str(_image(tmp_path, box_dir)), "--provider", "aws", "--instance-type", "g4dn.xlarge",
                          "--image", IMAGE, "--allow-cidr", "127.0.0.1/32"],
                         {**env, "ORCHESTRATE_AWS_SSH_ENDPOINT": f"{getpass.getuser()}@127.0.0.1:{port}"},
                         box_dir / "runs", instances)
        finally:
            server.stop()
        assert server.errors == []
    else:
        from tests.fakes.azure import VmServer

        arm = request.getfixturevalue("arm")
        request.getfixturevalue("sshd_binary")
        port = free_port()
        server = VmServer(arm, home, port, tmp_path / "vms").start()
        box_dir = tmp_path / "box"
        try:
            yield Launch(["-f", str(_image(tmp_path, box_dir, prepare="image")), "--provider", "azure",
                          "--instance-type", AZURE_SIZE, "--allow-cidr", "127.0.0.1/32"],
                         {"ORCHESTRATE_AZURE_SSH_ENDPOINT": f"{getpass.getuser()}@127.0.0.1:{port}"},
                         box_dir / "runs",
                         lambda run_id: [f"resource group {g['name']}" for g in arm.groups() if run_id in g["name"]])
        finally:
            server.stop()
        assert server.errors == []


arm = azure_fakes.arm  # the fixture
moto_server = aws_fakes.moto_server  # the fixture


@pytest.mark.parametrize("cell", cells(subprocess=True), ids=lambda c: cell_id(*c))
def test_fault(cell: tuple[str, str, str], home: Path, tmp_path: Path, launch: Launch,
               fake_payload: Callable[[str], Path], request: pytest.FixtureRequest) -> None:
    ctl = PayloadControl(tmp_path / "ctl")
    ctl.set_mode("normal")  # never released: it waits, as a long benchmark would, until it is stopped
    env = cli_env(home, ORCHESTRATE_PAYLOAD_DIR=str(fake_payload(ctl.main_code())), **launch.env)
    run = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", *launch.args, "--quiet"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + WAIT_S
        while not ctl.partial and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ctl.partial, f"the payload never wrote its first sample (run exited {run.poll()})"
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=30)
    down = run_cli(home, "down", "--all", **launch.env)
    with Store(home) as store:
        [row] = store.list_runs()
        run_id = row.id
        leaks = launch.leftovers(run_id)
        leaks += [f"store holds {m.machine_id} as {m.state}" for m in store.machines(run_id, live_only=True)]
        if (launch.run_dirs / run_id).exists():
            leaks.append(f"run directory {launch.run_dirs / run_id}")
        leaks += [f"payload process {pid}" for pid in ctl.pids() if process_alive(pid)]
        produced, stored = ctl.produced, stored_samples(store, run_id)
        facts = {"state": row.state, "error": row.error or "", "leaks": leaks, "produced": produced, "stored": stored,
                 "lost": max(0, produced - stored), "costs": cost_problems(store, run_id),
                 "down": down.returncode, "machines": len(store.machines(run_id))}
    problems = []
    if down.returncode != 0 or f"{run_id} → interrupted" not in down.stdout:
        problems.append(f"`down --all` exited {down.returncode}: {down.stdout[-400:]} {down.stderr[-400:]}")
    if leaks:
        problems.append(f"left behind: {leaks}")
    if row.state != "interrupted" or "abandoned" not in (row.error or ""):
        problems.append(f"recorded {row.state!r} ({row.error!r}); expected 'interrupted', abandoned")
    if not facts["machines"]:
        problems.append("the store recorded no machine for the run")
    if facts["costs"]:
        problems.append(f"cost: {facts['costs']}")
    request.node.user_properties.append((FACTS, {**facts, "problems": "; ".join(problems)}))
    assert not problems, "; ".join(problems)
    if facts["lost"]:
        raise LostResults(f"{facts['lost']} of {produced} samples the payload wrote before the kill are not in the "
                          "store")
