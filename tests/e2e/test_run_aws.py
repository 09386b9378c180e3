"""`orchestrate run --provider aws` from the command line, as a user types it: a moto server for EC2 (across
processes, through ``AWS_ENDPOINT_URL``) and the loopback instance server of ``tests.fakes.aws_loopback`` for the
instance's SSH (``ORCHESTRATE_AWS_SSH_ENDPOINT``), presenting the host key the run injected. The payload is the real
smoke suite (Keras training) run by this venv's Python, named by the spec's ``machine.environment``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.clouds import aws
from tests.conftest import FAKE_MAIN_HEADER, cli_env
from tests.e2e.cloud_cli import served, smoke_run
from tests.fakes import aws as aws_fakes
from tests.fakes.aws import IMAGE, REGION
from tests.fakes.aws_loopback import InstanceServer
from tests.fakes.loopback import image_spec
from tests.integration.conftest import free_port
from tests.integration.conftest import sshd_binary as sshd_binary  # the fixture

moto_server = aws_fakes.moto_server  # the fixture
pytestmark = pytest.mark.slow


@pytest.fixture
def instances(home: Path, tmp_path: Path, moto_server: dict[str, str], sshd_binary: Path) -> Iterator[dict[str, str]]:
    """The environment of a CLI run whose instances the loopback server plays."""
    server = InstanceServer(home, free_port(), tmp_path / "instances")
    with served(server, "ORCHESTRATE_AWS_SSH_ENDPOINT") as endpoint:
        yield {**moto_server, **endpoint}


def _left(run_id: str, endpoint_url: str | None = None) -> dict[str, Any]:
    ec2 = aws.client("ec2", region=REGION, endpoint_url=endpoint_url)
    pages = ec2.describe_instances(Filters=[{"Name": "tag:orchestrate:run-id", "Values": [run_id]}])
    states = [i["State"]["Name"] for r in pages["Reservations"] for i in r["Instances"]]
    return {"live": [s for s in states if s != "terminated"], "all": len(states),
            "groups": [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]
                       if run_id in g["GroupName"]],
            "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if run_id in k["KeyName"]]}


def test_a_smoke_run_on_aws_from_the_command_line_trains_and_leaves_nothing(
    home: Path, tmp_path: Path, instances: dict[str, str]
) -> None:
    run_id, row = smoke_run(home, tmp_path, instances, "--provider", "aws", "--instance-type", "g4dn.xlarge",
                            "--image", IMAGE)
    assert _left(run_id) == {"live": [], "all": 1, "groups": [], "key_pairs": []}
    assert row["machine_type"] == "g4dn.xlarge" and row["host"].startswith("i-")
    # Per second with AWS's 60 s minimum, at the catalog's on-demand price of g4dn.xlarge in us-east-1.
    assert row["price_per_hour"] == pytest.approx(0.526)
    assert row["cost_usd"] >= 0.526 * 60 / 3600 - 1e-9


def test_profile_names_the_account_for_the_run_and_down_uses_the_run_s_own(
    home: Path, tmp_path: Path, instances: dict[str, str], fake_payload: Any
) -> None:
    """The default chain has no credentials and no endpoint here: only the profile's reach the (moto) account."""
    endpoint = instances["AWS_ENDPOINT_URL"]
    config = tmp_path / "aws-config"
    config.write_text(f"[profile research]\nregion = {REGION}\nendpoint_url = {endpoint}\n"
                      "aws_access_key_id = testing\naws_secret_access_key = testing\n")
    env = {k: v for k, v in cli_env(home, **instances).items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = str(config)
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    env["ORCHESTRATE_PAYLOAD_DIR"] = str(fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", '
                                                      '"images_per_sec", 50.0)])\n'))
    _, spec = image_spec(tmp_path)
    args = ["run", "-f", str(spec), "--provider", "aws", "--instance-type", "g4dn.xlarge", "--image", IMAGE,
            "--allow-cidr", "127.0.0.1/32", "--quiet"]
    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator", *argv], capture_output=True, text=True,
                              timeout=600, env=env)

    without = cli(*args)
    assert without.returncode == 1 and "AWS" in without.stderr  # no credentials in the default chain: one line
    kept = cli(*args, "--profile", "research", "--keep")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    run_id = json.loads(cli("status", "--json", "--last", "1").stdout)[0]["id"]
    assert _left(run_id, endpoint)["live"] == ["running"]
    down = cli("down", run_id)  # no --profile: the run's own, as recorded
    assert down.returncode == 0, down.stdout + down.stderr
    assert _left(run_id, endpoint) == {"live": [], "all": 1, "groups": [], "key_pairs": []}
