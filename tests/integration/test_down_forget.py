"""`orchestrate down RUN --forget` against real sshd on 127.0.0.1: a kept box rebuilt with another host key, and one
whose port never answers. Without the flag `down` refuses such a box and keeps its lease; with it the clean-up is
given up, the lease released, and the store says the box was forgotten, not cleaned."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import api
from orchestrator.store import RunRow
from tests.conftest import FAKE_MAIN_HEADER, run_cli

pytestmark = pytest.mark.slow


def _inventory(tmp_path: Path, server: Any) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": [{
        "name": "box0", "host": server.host, "port": server.port, "user": server.user,
        "key_path": str(server.client_key_path), "host_key": server.host_key, "gpu": {"model": "T4", "count": 1},
        "price": {"per_hour": 3.6}, "prepare": "image", "python": sys.executable,
        "workdir": str(tmp_path / "box0-home" / "orchestrate")}]}))
    return path


@pytest.fixture
def kept_run(home: Path, sshd: Callable[..., Any], fake_payload: Callable[[str], Path],
             tmp_path: Path) -> tuple[RunRow, Any, Path, Path]:
    """A run kept (--keep) on box0: (the run, the box's sshd, the inventory file, the run's directory on the box)."""
    package = fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", 1.0)])\n')
    box = sshd()
    inventory_file = _inventory(tmp_path, box)
    kept = run_cli(home, "run", "--provider", "rented", "--host", "box0", "--keep",
                   ORCHESTRATE_INVENTORY=str(inventory_file), ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert kept.returncode == 0, kept.stderr
    [run] = api.list_runs(home=home)
    run_dir = tmp_path / "box0-home" / "orchestrate" / "runs" / run.id
    assert (run_dir / "results.json").exists()
    return run, box, inventory_file, run_dir


def _forgotten_and_recorded(home: Path, run_id: str) -> str:
    """Checks the store after a forget: lease released, machine forgotten, a forget event; returns its detail."""
    assert api.leases(home=home) == {}
    detail = api.run_detail(run_id, home=home)
    assert [(m.machine_id, m.state) for m in detail.machines] == [("box0", "forgotten")]
    assert detail.run.state == "succeeded"  # what the run measured stands; only its clean-up was given up
    [event] = [e for e in detail.events if e.step == "forget"]
    assert event.outcome == "ok" and event.detail is not None
    assert "box0: released, not cleaned up" in event.detail and run_id in event.detail
    return event.detail


def test_down_refuses_a_rebuilt_box_and_forget_releases_it_and_records_why(
    home: Path, sshd: Callable[..., Any], make_host_key: Callable[..., Path], kept_run: tuple[RunRow, Any, Path, Path],
) -> None:
    run, box, inventory_file, run_dir = kept_run
    box.stop()
    impostor = sshd(port=box.port, host_key_path=make_host_key())  # rebuilt: same address, another host key

    refused = run_cli(home, "down", run.id, ORCHESTRATE_INVENTORY=str(inventory_file))
    assert refused.returncode == 1
    assert "host key" in refused.stderr.lower() and f"orchestrate down {run.id} --forget" in refused.stderr
    assert api.leases(home=home) == {"box0": run.id}  # still held: its payload may still run there
    assert [m.state for m in api.run_detail(run.id, home=home).machines] == ["cleanup_failed"]

    forgot = run_cli(home, "down", run.id, "--forget", ORCHESTRATE_INVENTORY=str(inventory_file))
    assert forgot.returncode == 0, forgot.stderr
    assert f"forgotten: {run.id}: box0 released without its clean-up" in forgot.stdout
    _forgotten_and_recorded(home, run.id)
    assert run_dir.exists()  # not cleaned: nothing was sent to the impostor
    assert "Accepted publickey" not in impostor.log()
    shown = run_cli(home, "status", run.id, ORCHESTRATE_INVENTORY=str(inventory_file))
    assert "forget" in shown.stdout and "box0 (attempt 1)" in shown.stdout and ": forgotten" in shown.stdout
    again = run_cli(home, "down", "--all", ORCHESTRATE_INVENTORY=str(inventory_file))
    assert again.returncode == 0 and "nothing to tear down" in again.stdout  # nothing left held or up


@pytest.fixture
def silent_port() -> Iterator[Callable[[int], socket.socket]]:
    """Listens on a port and never answers (no banner, no accept): a box that hangs."""
    sockets: list[socket.socket] = []

    def listen(port: int) -> socket.socket:
        silent = socket.socket()
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", port))
        silent.listen(8)
        silent.setblocking(False)
        sockets.append(silent)
        return silent

    yield listen
    for silent in sockets:
        silent.close()


def test_forget_gives_up_a_box_that_never_answers_without_connecting_to_it(
    home: Path, kept_run: tuple[RunRow, Any, Path, Path], silent_port: Callable[[int], socket.socket],
) -> None:
    run, box, inventory_file, run_dir = kept_run
    box.stop()
    silent = silent_port(box.port)
    forgot = run_cli(home, "down", run.id, "--forget", ORCHESTRATE_INVENTORY=str(inventory_file))
    assert forgot.returncode == 0, forgot.stderr
    detail = _forgotten_and_recorded(home, run.id)
    assert "nothing connected" in detail
    with pytest.raises(BlockingIOError):
        silent.accept()  # no connection was even tried
    assert run_dir.exists()
