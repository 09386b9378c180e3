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
