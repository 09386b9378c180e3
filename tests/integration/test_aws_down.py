"""Across processes, against a moto server: `orchestrate run --provider aws` SIGKILLed once its instance exists,
then `orchestrate down --all` from a new process terminates the instance and removes its group and key pair."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli_env, run_cli
from tests.fakes import aws as aws_fakes
from tests.fakes.aws import IMAGE, REGION
from tests.integration.conftest import free_port

moto_server = aws_fakes.moto_server  # the fixture
pytestmark = pytest.mark.slow


def _ec2() -> Any:
    from orchestrator.clouds import aws

    return aws.client("ec2", region=REGION)


def _instances(states: tuple[str, ...]) -> list[dict[str, Any]]:
    pages = _ec2().describe_instances(Filters=[{"Name": "tag-key", "Values": ["orchestrate:run-id"]},
                                               {"Name": "instance-state-name", "Values": list(states)}])
    return [i for r in pages["Reservations"] for i in r["Instances"]]


def test_a_killed_aws_run_is_torn_down_by_down_all_from_a_new_process(
    home: Path, moto_server: dict[str, str]
) -> None:
    # Nothing answers SSH at this address: the run waits in connect, its instance up and billing.
    env = cli_env(home, **moto_server, ORCHESTRATE_AWS_SSH_ENDPOINT=f"127.0.0.1:{free_port()}")
    run = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--provider", "aws", "--instance-type", "g4dn.xlarge",
         "--image", IMAGE, "--allow-cidr", "127.0.0.1/32"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _instances(("running",)):
            time.sleep(0.2)
        assert _instances(("running",)), "the run never launched its instance"
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    [instance] = _instances(("pending", "running"))
    run_id = next(t["Value"] for t in instance["Tags"] if t["Key"] == "orchestrate:run-id")
    status = run_cli(home, "status", "--json", **moto_server)
    assert '"abandoned": true' in status.stdout

    down = run_cli(home, "down", "--all", **moto_server)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"{run_id} → interrupted" in down.stdout and instance["InstanceId"] in down.stdout
    assert _instances(("pending", "running", "stopping", "stopped", "shutting-down")) == []
    ec2 = _ec2()
    assert [g for g in ec2.describe_security_groups()["SecurityGroups"] if run_id in g["GroupName"]] == []
    assert [k for k in ec2.describe_key_pairs()["KeyPairs"] if run_id in k["KeyName"]] == []
    assert not (home / "keys" / run_id).exists()
    again = run_cli(home, "down", "--all", **moto_server)
    assert again.returncode == 0 and "nothing to tear down" in again.stdout
