"""`orchestrate inventory import-terraform`: a Terraform fleet's outputs become inventory entries whose host keys are
pinned from the outputs, and the imported inventory passes `orchestrate inventory check` against real sshd."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli

pytestmark = pytest.mark.slow
RECORDED = Path(__file__).resolve().parents[1] / "data" / "terraform" / "output.json"


def _import(home: Path, output: Path, key: Path, *args: str) -> Any:
    return run_cli(home, "inventory", "import-terraform", str(output), "--key", str(key), *args,
                   ORCHESTRATE_INVENTORY=str(home / "inventory.yaml"))


def test_the_recorded_output_of_the_aws_module_imports_with_every_host_key_pinned(
    home: Path, client_key: Path
) -> None:
    result = _import(home, RECORDED, client_key)
    assert result.returncode == 0, result.stdout + result.stderr
    written = yaml.safe_load((home / "inventory.yaml").read_text())["hosts"]
    boxes = json.loads(RECORDED.read_text())["hosts"]["value"]
    assert [h["name"] for h in written] == [b["name"] for b in boxes]
    for entry, box in zip(written, boxes, strict=True):
        assert entry["host_key"] == box["host_key"] and not entry.get("trust_on_first_use")
        assert (entry["host"], entry["user"], entry["key_path"]) == (box["host"], box["user"], str(client_key))
        assert entry["private_address"] == box["private_address"]
        assert entry["gpu"]["model"] == box["gpu_model"]
    listed = run_cli(home, "inventory", "list", "--json", ORCHESTRATE_INVENTORY=str(home / "inventory.yaml"))
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == len(boxes)


def _python_with_a_stand_in_keras(tmp_path: Path) -> Path:
    """This venv's Python with a stand-in ``keras`` first on its path: the check's probe imports it in a blink, where
    the real one (TensorFlow) takes seconds per box. Whether a box's real Keras imports is the rented tests' part."""
    stand_in = tmp_path / "stand-in"
    (stand_in / "keras").mkdir(parents=True)
    (stand_in / "keras" / "__init__.py").write_text(
        "import types\n__version__ = '3.0.0'\nbackend = types.SimpleNamespace(backend=lambda: 'tensorflow')\n")
    python = tmp_path / "python-with-stand-in-keras"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(stand_in))} exec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    return python


def test_an_imported_fleet_passes_inventory_check_against_its_pinned_host_keys(
    home: Path, tmp_path: Path, client_key: Path, sshd: Callable[..., Any]
) -> None:
    # The recorded output's shape, with two loopback sshd servers as the boxes (their own host keys, as Terraform
    # would have generated and injected them).
    document = json.loads(RECORDED.read_text())
    servers = [sshd(), sshd()]
    for box, server in zip(document["hosts"]["value"], servers, strict=False):
        box.update(host="127.0.0.1", port=server.port, user=server.user, host_key=server.host_key)
    document["hosts"]["value"] = document["hosts"]["value"][: len(servers)]
    output = tmp_path / "fleet.json"
    output.write_text(json.dumps(document))
    imported = _import(home, output, client_key, "--python", str(_python_with_a_stand_in_keras(tmp_path)))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    check = run_cli(home, "inventory", "check", "--json", ORCHESTRATE_INVENTORY=str(home / "inventory.yaml"))
    assert check.returncode == 0, check.stdout + check.stderr
    results = json.loads(check.stdout)
    assert [r["reachable"] for r in results] == [True, True] and all(r["problem"] is None for r in results)
    assert all(r["keras"] for r in results)


def test_a_box_presenting_another_host_key_than_the_outputs_fails_the_check(
    home: Path, tmp_path: Path, client_key: Path, sshd: Callable[..., Any]
) -> None:
    document = json.loads(RECORDED.read_text())
    server = sshd()
    box = document["hosts"]["value"][0]
    box.update(host="127.0.0.1", port=server.port, user=server.user)  # host_key stays the recorded one
    document["hosts"]["value"] = [box]
    output = tmp_path / "fleet.json"
    output.write_text(json.dumps(document))
    assert _import(home, output, client_key).returncode == 0
    check = run_cli(home, "inventory", "check", "--json", ORCHESTRATE_INVENTORY=str(home / "inventory.yaml"))
    assert check.returncode == 1
    [result] = json.loads(check.stdout)
    assert not result["reachable"] and "host key" in result["problem"].lower()


def test_merge_adds_new_boxes_replaces_same_named_ones_and_keeps_the_rest(home: Path, client_key: Path) -> None:
    inventory = home / "inventory.yaml"
    home.mkdir(parents=True)
    boxes = json.loads(RECORDED.read_text())["hosts"]["value"]
    inventory.write_text(yaml.safe_dump({"hosts": [
        {"name": "lab-4090", "host": "203.0.113.10", "user": "me", "key_path": str(client_key),
         "trust_on_first_use": True, "price": {"per_month": 350}},
        {"name": boxes[0]["name"], "host": "198.51.100.1", "user": "old", "key_path": str(client_key),
         "trust_on_first_use": True},
    ]}))
    refused = _import(home, RECORDED, client_key)
    assert refused.returncode == 2 and "--merge" in refused.stderr
    merged = _import(home, RECORDED, client_key, "--merge")
    assert merged.returncode == 0, merged.stderr
    assert "1 replaced" in merged.stdout
    written = {h["name"]: h for h in yaml.safe_load(inventory.read_text())["hosts"]}
    assert written["lab-4090"]["price"] == {"per_month": 350}  # kept as it was
    assert written[boxes[0]["name"]]["host"] == boxes[0]["host"]  # replaced by the fleet's
    assert set(written) == {"lab-4090", *(b["name"] for b in boxes)}
