"""Finding 5: bad input for where a run goes is refused at plan time — exit 2, one line, nothing written — and the
dry run refuses it too, or shows the boxes it would use with their real prices."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    hosts = [
        {"name": "box0", "host": "192.0.2.10", "user": "u", "key_path": "/k", "host_key": KEY,
         "gpu": {"model": "T4", "count": 1}, "price": {"per_hour": 0.5}},
        {"name": "box1", "host": "192.0.2.11", "user": "u", "key_path": "/k", "host_key": KEY,
         "gpu": {"model": "RTX 4090", "count": 2}, "price": {"per_month": 365, "utilisation": 0.5}},
    ]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": hosts}))
    return path


CASES = [
    (["--provider", "rented", "--host", "nosuchbox"], "invalid host: received 'nosuchbox'", "box0, box1"),
    (["--provider", "rented", "--gpu", "H100"], "invalid gpu: received 'H100'", "RTX 4090, T4"),
    (["--provider", "rented", "--count", "5"], "invalid --count: received 5", "at most 2"),
    (["--provider", "rented", "--gpu", "T4", "--count", "2"], "invalid --count: received 2", "at most 1"),
    (["--provider", "rented", "--host", "box0", "--host", "box0"], "invalid --host: received 'box0'", "each"),
    (["--provider", "rented", "--host", "box0", "--count", "2"], "invalid --count: received 2", "--host"),
    (["--provider", "local", "--count", "2"], "invalid --count: received 2", "the local provider"),
    (["--provider", "local", "--host", "box0"], "invalid --host", "does not use it"),
    (["--provider", "local", "--gpu", "T4"], "invalid --gpu", "does not use it"),
    (["--provider", "local", "--reclaim"], "invalid --reclaim", "does not use it"),
    (["--provider", "local", "--lease-wait", "60"], "invalid --lease-wait", "does not use it"),
    (["--provider", "rented", "--instance-type", "p3.2xlarge"], "invalid --instance-type", "does not use it"),
]


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize(("args", "message", "accepted"), CASES, ids=[" ".join(c[0][1:]) for c in CASES])
def test_where_a_run_goes_is_checked_before_anything_is_written(
    home: Path, inventory: Path, args: list[str], message: str, accepted: str, dry_run: bool
) -> None:
    result = run_cli(home, "run", *args, *(["--dry-run"] if dry_run else []), ORCHESTRATE_INVENTORY=str(inventory))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0] and accepted in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "state.db").exists()  # no run, no store: nothing half-written


def test_a_missing_inventory_is_bad_input(home: Path, tmp_path: Path) -> None:
    result = run_cli(home, "run", "--provider", "rented", ORCHESTRATE_INVENTORY=str(tmp_path / "none.yaml"))
    assert result.returncode == 2 and "invalid inventory" in result.stderr and "none.yaml" in result.stderr
    assert not (home / "state.db").exists()


def test_the_dry_run_shows_the_boxes_it_would_use_with_their_prices(home: Path, inventory: Path) -> None:
    named = run_cli(home, "run", "--provider", "rented", "--host", "box1", "--dry-run",
                    ORCHESTRATE_INVENTORY=str(inventory))
    assert named.returncode == 0, named.stderr
    assert "box1 (2 x RTX 4090) at u@192.0.2.11:22, $1/h" in named.stdout  # $365 a month at half use
    assert "host:" not in named.stdout and "box0" not in named.stdout
    anyone = run_cli(home, "run", "--provider", "rented", "--dry-run", ORCHESTRATE_INVENTORY=str(inventory))
    assert "any 1 of:" in anyone.stdout and "box0 (1 x T4)" in anyone.stdout and "$0.5/h" in anyone.stdout
    assert not (home / "state.db").exists()


# Azure without an account: the dry run plans (it creates nothing) and says what a launch will need; a launch refuses.
NO_AZURE = {"AZURE_SUBSCRIPTION_ID": "", "ORCHESTRATE_AZURE_CLOUD": ""}
T4 = ["run", "--provider", "azure", "--instance-type", "Standard_NC4as_T4_v3"]


def _nothing_in(home: Path) -> bool:
    return not home.exists() or not any(home.iterdir())


def test_an_azure_dry_run_without_a_subscription_plans_and_says_what_a_launch_needs(home: Path) -> None:
    result = run_cli(home, *T4, "--dry-run", **NO_AZURE)
    assert result.returncode == 0, result.stderr
    assert "azure Standard_NC4as_T4_v3 in eastus on-demand, $0.526/h" in result.stdout
    needs = [line for line in result.stdout.splitlines() if "a launch needs" in line]
    assert len(needs) == 1 and "AZURE_SUBSCRIPTION_ID (not set" in needs[0], result.stdout
    assert "DefaultAzureCredential" in needs[0] and "az login" in needs[0]
    assert "None" not in result.stdout + result.stderr
    assert _nothing_in(home)  # no store, no azure.yaml: nothing written


def test_an_azure_launch_without_a_subscription_is_refused_in_one_line_saying_not_set(home: Path) -> None:
    result = run_cli(home, *T4, **NO_AZURE)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: invalid AZURE_SUBSCRIPTION_ID: not set; accepted: the subscription id")
    assert "None" not in result.stderr and "Traceback" not in result.stderr
    assert _nothing_in(home)


def test_an_azure_spot_dry_run_plans_spot_first_with_the_on_demand_fallback(home: Path) -> None:
    result = run_cli(home, *T4, "--spot", "--dry-run", **NO_AZURE)
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "1. azure Standard_NC4as_T4_v3 in eastus spot, $0.158/h (per_minute_full)" in lines, result.stdout
    assert "2. azure Standard_NC4as_T4_v3 in eastus on-demand, $0.526/h (per_minute_full)" in lines


IMAGES = [
    (["--provider", "azure", "--instance-type", "Standard_NC4as_T4_v3"], "ubuntu", "publisher:offer:sku:version",
     "ami-"),
    (["--provider", "azure", "--instance-type", "Standard_NC4as_T4_v3"], "ami-0123456789abcdef0",
     "publisher:offer:sku:version", "ami-"),
    (["--provider", "aws", "--instance-type", "g4dn.xlarge"], "ubuntu", "an AMI id", "publisher:offer"),
    (["--provider", "aws", "--instance-type", "g4dn.xlarge"], "microsoft-dsvm:ubuntu-hpc:2204:latest", "an AMI id",
     "publisher:offer"),
]


@pytest.mark.parametrize(("dry_run"), [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize(("args", "image", "accepted", "other_cloud"), IMAGES,
                         ids=[f"{case[0][1]} {case[1]}" for case in IMAGES])
def test_a_refused_image_names_the_flag_and_only_the_formats_of_the_provider_asked_for(
    home: Path, args: list[str], image: str, accepted: str, other_cloud: str, dry_run: bool
) -> None:
    result = run_cli(home, "run", *args, "--image", image, *(["--dry-run"] if dry_run else []),
                     AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000000", ORCHESTRATE_AZURE_CLOUD="")
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: invalid --image: received '{image}'; accepted: {args[1]}: "), line
    assert accepted in line and other_cloud not in line.split("accepted:")[1], line
    assert "machine.image" not in result.stderr
    assert _nothing_in(home)
