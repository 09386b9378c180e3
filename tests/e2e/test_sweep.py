"""`orchestrate sweep FILE` as a user runs it: cells as real runs on the dev box and on loopback rented boxes (real
sshd), a stand-in payload that takes a set time, the budget, a failed cell, SIGKILL and --resume."""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from orchestrator.clouds import aws
from orchestrator.store import Store
from tests.conftest import FAKE_MAIN_HEADER, cli_env, run_cli
from tests.fakes import aws as aws_fakes
from tests.fakes import azure as azure_fakes
from tests.fakes.arm import ArmFake
from tests.fakes.aws import IMAGE, REGION
from tests.fakes.aws_loopback import InstanceServer
from tests.fakes.azure import VmServer
from tests.integration.conftest import client_key as client_key  # the fixtures
from tests.integration.conftest import free_port
from tests.integration.conftest import make_host_key as make_host_key
from tests.integration.conftest import sshd as sshd
from tests.integration.conftest import sshd_binary as sshd_binary
from tests.store_sql import sql

pytestmark = pytest.mark.slow
moto_server = aws_fakes.moto_server  # the fixtures
arm = azure_fakes.arm

# Sleeps SWEEP_CELL_S (default 0.5 s); a cell with epochs=13 fails (exit 3); the throughput is 100 × epochs.
PAYLOAD = FAKE_MAIN_HEADER + """
params = suite["params"]
time.sleep(float(os.environ.get("SWEEP_CELL_S", "0.5")))
if params.get("epochs") == 13:
    print("unlucky epochs", file=sys.stderr)
    sys.exit(3)
write([sample("train_throughput", "images_per_sec", 100.0 * float(params.get("epochs", 1)))])
"""


@pytest.fixture
def cell_payload(fake_payload: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    package = fake_payload(PAYLOAD)
    monkeypatch.setenv("ORCHESTRATE_PAYLOAD_DIR", str(package))
    return package


def write_sweep(path: Path, **fields: Any) -> Path:
    path.write_text(yaml.safe_dump({"suites": ["smoke"], **fields}, sort_keys=False))
    return path


def inventory_of(tmp_path: Path, servers: list[Any]) -> Path:
    hosts = [{"name": f"box{i}", "host": s.host, "port": s.port, "user": s.user, "key_path": str(s.client_key_path),
              "host_key": s.host_key, "gpu": {"model": "T4", "count": 1}, "price": {"per_hour": 3.6},
              "prepare": "image", "python": sys.executable, "workdir": str(tmp_path / f"box{i}-home" / "orchestrate")}
             for i, s in enumerate(servers)]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": hosts}))
    return path


def status(home: Path, name: str, **env: str) -> dict[str, Any]:
    result = run_cli(home, "campaign", "status", name, "--json", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def cells(home: Path, name: str, **env: str) -> list[dict[str, Any]]:
    return status(home, name, **env)["progress"]["cells"]  # type: ignore[no-any-return]


def live_machines(home: Path) -> list[Any]:
    with Store(home) as store:
        return store.machines(live_only=True)


def test_a_campaign_runs_every_cell_and_a_failed_cell_does_not_stop_it(
    home: Path, tmp_path: Path, cell_payload: Path
) -> None:
    sweep = write_sweep(tmp_path / "sweep.yaml", name="grid", machines=[{"provider": "local", "price_per_hour": 3.6}],
                        params={"epochs": [1, 13, 2]}, parallel=2)
    result = run_cli(home, "sweep", str(sweep))
    assert result.returncode == 1, result.stdout + result.stderr  # a cell failed
    lines = result.stdout.splitlines()
    # Not a terminal: one line per cell event (three starts, three ends), then the campaign's end.
    assert sum(": running as r-" in line for line in lines) == 3
    # Each line names what varies between the cells first, then where and the cell.
    assert any(re.search(r"\] epochs 13 on local \(cell [0-9a-f]{10}\): failed", line) for line in lines)
    by_epochs = {c["values"]: c for c in cells(home, "grid")}
    assert "campaign grid (" in result.stdout and "2 succeeded" in result.stdout and "1 failed" in result.stdout, (
        result.stdout, [(values, c["state"], c.get("error")) for values, c in by_epochs.items()])
    assert by_epochs["suite=smoke, epochs=13"]["state"] == "failed"
    assert "payload" in by_epochs["suite=smoke, epochs=13"]["error"]  # the run's own error, kept with the cell
    assert {c["state"] for v, c in by_epochs.items() if "13" not in v} == {"succeeded"}
    runs = json.loads(run_cli(home, "status", "--json").stdout)
    assert sorted(r["name"] for r in runs) == sorted(f"grid/{c['cell_id']}" for c in by_epochs.values())
    assert live_machines(home) == []
    # Nothing left to resume; failed cells only with --retry-failed (and the payload still fails them).
    again = run_cli(home, "sweep", str(sweep), "--resume")
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--resume" in again.stderr
    retried = run_cli(home, "sweep", str(sweep), "--resume", "--retry-failed")
    assert retried.returncode == 1 and sum(": running as r-" in line for line in retried.stdout.splitlines()) == 1
    assert by_epochs["suite=smoke, epochs=13"]["cell_id"] in retried.stdout


def test_the_budget_stops_launching_where_the_next_cell_would_take_the_total_over(
    home: Path, tmp_path: Path, cell_payload: Path
) -> None:
    suite = tmp_path / "quick.yaml"
    suite.write_text(yaml.safe_dump({"name": "quick", "description": "a stand-in", "estimated_duration_s": 8,
                                     "params": {"epochs": 1}}))
    # $36/h = 1 cent a second; each cell is estimated at (2 s setup + 8 s) = $0.10 and bills 1.5 to 3 s (a loaded
    # machine): cells run one at a time while what was spent leaves room for an estimate, so several run beyond the
    # two the estimates alone allow, and the rest are left out. The estimate is well above a cell's real cost plus
    # its teardown allowance, so that the guard against overruns (another test's subject) never fires here.
    sweep = write_sweep(tmp_path / "budget.yaml", name="budget", suites=[str(suite)],
                        machines=[{"provider": "local", "price_per_hour": 36.0}],
                        params={"epochs": list(range(1, 13))}, parallel=1, budget_usd=0.25)
    dry = run_cli(home, "sweep", str(sweep), "--dry-run")
    assert dry.returncode == 0 and "2 cell(s) to run" in dry.stdout  # the plan: estimates alone
    result = run_cli(home, "sweep", str(sweep), timeout=300, SWEEP_CELL_S="1")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = cells(home, "budget")
    ran = [c for c in listed if c["state"] == "succeeded"]
    skipped = [c for c in listed if c["state"] == "skipped"]
    spent = status(home, "budget")["progress"]["spent_usd"]
    assert len(ran) + len(skipped) == 12 and ran and skipped
    assert spent <= 0.25  # never over
    with Store(home) as store:
        billed = sum(line.amount_usd for run in store.list_runs() for line in store.costs(run.id))
    assert billed == pytest.approx(spent)
    # The right point: every cell left out would have taken what was spent, plus its estimate, over the budget…
    for cell in skipped:
        assert spent + cell["estimated_usd"] > 0.25
        assert "left out by the budget" in cell["error"]
    # …and more ran than the estimates alone allowed, as finished cells cost less than estimated.
    assert len(ran) > 2


def test_a_cell_that_overruns_is_stopped_at_the_budget(home: Path, tmp_path: Path, cell_payload: Path) -> None:
    suite = tmp_path / "short.yaml"
    suite.write_text(yaml.safe_dump({"name": "short", "description": "estimated short, runs long",
                                     "estimated_duration_s": 1, "params": {"epochs": 1}}))
    sweep = write_sweep(tmp_path / "over.yaml", name="over", suites=[str(suite)],
                        machines=[{"provider": "local", "price_per_hour": 36.0}], params={"epochs": [1, 2]},
                        parallel=1, budget_usd=0.10)
    result = run_cli(home, "sweep", str(sweep), timeout=300, SWEEP_CELL_S="120")
    assert result.returncode == 0, result.stdout + result.stderr  # the budget's stop is not a failure
    assert "stopped by budget" in result.stdout
    first, second = cells(home, "over")
    assert first["state"] == "interrupted" and second["state"] == "skipped"
    assert status(home, "over")["progress"]["spent_usd"] <= 0.10
    assert live_machines(home) == []


@pytest.fixture
def boxes(home: Path, tmp_path: Path, sshd: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    path = inventory_of(tmp_path, [sshd(), sshd()])
    monkeypatch.setenv("ORCHESTRATE_INVENTORY", str(path))
    return tmp_path


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _cell_rows(home: Path) -> list[Any]:
    with Store(home) as store:
        return sql(store, "SELECT cell_id, state, run_id, attempts FROM campaign_cells")


def _runs_done(home: Path, run_ids: list[str]) -> bool:
    """Every run ended or abandoned (a run its process never recorded counts as done: nothing was launched)."""
    with Store(home) as store:
        recorded = {row.id: row for row in store.list_runs()}
        return all(r not in recorded or recorded[r].state in ("succeeded", "failed", "interrupted")
                   or recorded[r].abandoned for r in run_ids)


@pytest.mark.parametrize("killed", ["the orchestrator", "the orchestrator and its cells"])
def test_a_campaign_killed_with_sigkill_resumes_without_rerunning_finished_cells(
    home: Path, boxes: Path, cell_payload: Path, killed: str
) -> None:
    sweep = write_sweep(boxes / "kill.yaml", name="kill",
                        machines=[{"provider": "rented", "host": "box0"}, {"provider": "rented", "host": "box1"},
                                  {"provider": "local"}], params={"epochs": [1, 2]}, parallel=2)
    env = cli_env(home, SWEEP_CELL_S="3")
    process = subprocess.Popen([sys.executable, "-m", "orchestrator", "sweep", str(sweep)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(_cell_rows(home)) == 6 and sum(r["state"] == "succeeded" for r in _cell_rows(home)) >= 2
                  and sum(r["state"] == "running" for r in _cell_rows(home)) == 2, 120, "2 cells done, 2 running")
        running = [r["run_id"] for r in _cell_rows(home) if r["state"] == "running"]
        _wait_for(lambda: _runs_started(home, running), 60, "the running cells' payloads to start")
        children = psutil.Process(process.pid).children(recursive=True) if killed != "the orchestrator" else []
        for victim in [process.pid, *(child.pid for child in children)]:
            os.kill(victim, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    before = {r["cell_id"]: (r["state"], r["run_id"]) for r in _cell_rows(home)}
    finished = {cell for cell, (state, _) in before.items() if state == "succeeded"}
    _wait_for(lambda: _runs_done(home, running), 60, "the cells' runs to end or be abandoned")
    listed = run_cli(home, "campaign", "list")
    assert "abandoned" in listed.stdout
    resumed = run_cli(home, "sweep", str(sweep), "--resume", timeout=300, SWEEP_CELL_S="0.2")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = {r["cell_id"]: r for r in _cell_rows(home)}
    assert {r["state"] for r in after.values()} == {"succeeded"}
    for cell in finished:  # not run again
        assert after[cell]["run_id"] == before[cell][1] and after[cell]["attempts"] == 1
    # A cell running at the kill is run again — unless its run ended on its own, succeeded, before it noticed its
    # campaign was gone (its payload was already finishing): then the resume keeps that run, billed once.
    with Store(home) as store:
        states = {run.id: run.state for run in store.list_runs()}
    for r_cell, (state, run_id) in before.items():
        if state == "running":
            row = after[r_cell]
            kept = row["attempts"] == 1 and row["run_id"] == run_id and states[run_id] == "succeeded"
            assert row["attempts"] == 2 or kept, (row, states.get(run_id))
    # Nothing left: no machine up in the store, no run directory on the boxes, no payload process.
    assert live_machines(home) == []
    for box in ("box0", "box1"):
        runs_dir = boxes / f"{box}-home" / "orchestrate" / "runs"
        assert not runs_dir.exists() or list(runs_dir.iterdir()) == []
    assert not [p for p in psutil.process_iter(["cmdline"]) if "keras_bench" in " ".join(p.info["cmdline"] or [])
                and str(home) in " ".join(p.info["cmdline"] or [])]


def _runs_started(home: Path, run_ids: list[str]) -> bool:
    """Every run recorded and its payload started."""
    with Store(home) as store:
        return all(sql(store, "SELECT 1 FROM runs WHERE id=?", (r,)) and any(e.step == "execute"
                   for e in store.events(r)) for r in run_ids)


def test_cells_on_one_rented_box_queue_on_it(home: Path, boxes: Path, cell_payload: Path) -> None:
    sweep = write_sweep(boxes / "queue.yaml", name="queue", machines=[{"provider": "rented", "host": "box0"}],
                        params={"epochs": [1, 2, 3]}, parallel=3)
    result = run_cli(home, "sweep", str(sweep), timeout=300, SWEEP_CELL_S="1")
    assert result.returncode == 0, result.stdout + result.stderr
    with Store(home) as store:
        spans = sorted((e.started_at, e.ended_at) for r in store.list_runs() for e in store.events(r.id)
                       if e.step == "execute")
    assert len(spans) == 3
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False))  # one at a time


def test_a_terminal_gets_a_live_table(home: Path, tmp_path: Path, cell_payload: Path) -> None:
    import pty

    sweep = write_sweep(tmp_path / "tty.yaml", name="tty", machines=[{"provider": "local"}], params={"epochs": [1]})
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "orchestrator", "sweep", str(sweep)],
                               env={**cli_env(home), "TERM": "xterm"}, stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        process.wait(timeout=120)
        os.close(leader)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))  # colours and cursor moves
    assert process.returncode == 0, text
    assert "┃ cell" in text and "spent $" in text and "succeeded" in text
    assert ": running as r-" not in text  # the table, not the lines


def test_a_campaign_over_local_rented_aws_and_azure_completes_and_reports(
    home: Path, tmp_path: Path, cell_payload: Path, sshd: Callable[..., Any], moto_server: dict[str, str],
    arm: ArmFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATE_INVENTORY", str(inventory_of(tmp_path, [sshd()])))
    aws_port, azure_port = free_port(), free_port()
    instances = InstanceServer(home, aws_port, tmp_path / "instances").start()
    vms = VmServer(arm, home, azure_port, tmp_path / "vms").start()
    user = getpass.getuser()
    # The clouds' "images" run the payload with this venv's Python, in a test directory.
    image = {"python": sys.executable, "workdir": str(tmp_path / "image")}
    sweep = write_sweep(tmp_path / "clouds.yaml", name="four-ways", machines=[
        {"provider": "local", "price_per_hour": 0.1},
        {"provider": "rented", "host": "box0"},
        {"provider": "aws", "instance_type": "g4dn.xlarge", "image": IMAGE, "allow_cidr": "127.0.0.1/32",
         "environment": image},
        {"provider": "azure", "instance_type": "Standard_NC4as_T4_v3", "allow_cidr": "127.0.0.1/32",
         "environment": {**image, "prepare": "image"}},
    ], params={"epochs": [1, 2]}, parallel=4, budget_usd=5,
        # The loopback servers play one instance (one VM) at a time: one cell per cloud.
        exclude=[{"provider": "aws", "epochs": 2}, {"provider": "azure", "epochs": 2}])
    env = {"ORCHESTRATE_AWS_SSH_ENDPOINT": f"{user}@127.0.0.1:{aws_port}",
           "ORCHESTRATE_AZURE_SSH_ENDPOINT": f"{user}@127.0.0.1:{azure_port}"}
    try:
        result = run_cli(home, "sweep", str(sweep), timeout=600, **env)
    finally:
        instances.stop()
        vms.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    listed = cells(home, "four-ways", **env)
    assert [c["state"] for c in listed] == ["succeeded"] * 6
    assert [c["where"] for c in listed] == ["local", "local", "rented box0", "rented box0", "aws g4dn.xlarge",
                                            "azure Standard_NC4as_T4_v3"]
    # Each cloud cell's machine is the cloud's: an EC2 instance id, an Azure VM.
    machines = {c["where"].split()[0]: c["machine"] for c in listed}
    assert machines["aws"].startswith("i-") and machines["rented"] == "box0"
    # Nothing left behind: no machine up, no instance running, no resource group.
    assert live_machines(home) == []
    [aws_run] = [c["run_id"] for c in listed if c["where"].startswith("aws")]
    ec2 = aws.client("ec2", region=REGION)
    pages = ec2.describe_instances(Filters=[{"Name": "tag:orchestrate:run-id", "Values": [aws_run]}])
    assert [i["State"]["Name"] for r in pages["Reservations"] for i in r["Instances"]] == ["terminated"]
    assert arm.groups() == []
    # The report: the best configuration per provider and overall by images per dollar.
    report = run_cli(home, "campaign", "report", "four-ways", "--format", "json", **env)
    assert report.returncode == 0, report.stderr
    best = json.loads(report.stdout)["best"]
    scopes = {row["scope"] for row in best if row["criterion"] == "images per $"}
    assert scopes == {"overall", "local", "rented", "aws", "azure"}
    [overall] = [row for row in best if row["scope"] == "overall" and row["criterion"] == "images per $"]
    # 200 images/s (epochs=2) at the lowest price: the local box at $0.10/h.
    assert overall["where"] == "local" and overall["value"] == pytest.approx(200 * 3600 / 0.1)
