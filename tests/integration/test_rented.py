"""Runs on rented boxes: the real CLI against real sshd processes on 127.0.0.1 (issue 4's must-shows)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import api
from orchestrator.store import RunRow
from tests.conftest import FAKE_MAIN_HEADER, cli_env, run_cli

pytestmark = pytest.mark.slow


def _only_run(home: Path) -> RunRow:
    """The store's one run (the test fails when there is not exactly one)."""
    [run] = api.list_runs(home=home)
    return run


def _outcomes(home: Path, run_id: str) -> dict[str, str | None]:
    """Each step of the run with its (last) outcome."""
    return {event.step: event.outcome for event in api.run_detail(run_id, home=home).events}


def _samples(home: Path) -> list[dict[Hashable, Any]]:
    """Every run's samples, in order, with their metadata (the columns a sample lacks are NaN or None)."""
    samples, _ = api.report_frames(home=home)
    return samples[samples["metric"].notna()].to_dict("records")  # a run without samples has one row of NaN


@pytest.fixture
def inventory(tmp_path: Path) -> Callable[..., Path]:
    """Writes an inventory of the given servers; each box gets its own work directory under tmp_path."""

    def write(servers: list[Any], **overrides: Any) -> Path:
        hosts = []
        for i, server in enumerate(servers):
            entry = {
                "name": f"box{i}",
                "host": server.host,
                "port": server.port,
                "user": server.user,
                "key_path": str(server.client_key_path),
                "host_key": server.host_key,
                "gpu": {"model": "T4", "count": 1},
                "price": {"per_hour": 3.6},
                "prepare": "image",
                "python": sys.executable,
                "workdir": str(tmp_path / f"box{i}-home" / "orchestrate"),
            }
            entry.update(overrides)
            hosts.append(entry)
        path = tmp_path / "inventory.yaml"
        path.write_text(yaml.safe_dump({"hosts": hosts}))
        return path

    return write


def _rented(home: Path, inventory_file: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(home, "run", "--provider", "rented", *args, ORCHESTRATE_INVENTORY=str(inventory_file), **env)


def test_a_whole_run_on_a_rented_box_is_pushed_prepared_executed_collected_and_recorded(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], tmp_path: Path
) -> None:
    server = sshd()
    inventory_file = inventory([server])
    # The real payload (Keras training), on the fewest epochs that show the param reached it.
    result = _rented(home, inventory_file, "--host", "box0", "--set", "epochs=2")
    assert result.returncode == 0, result.stdout + result.stderr
    run = _only_run(home)
    assert run.state == "succeeded"
    steps = _outcomes(home, run.id)
    assert all(steps[s] == "ok" for s in ("connect", "prepare", "push", "execute", "collect", "teardown"))
    samples = _samples(home)
    assert {sample["host"] for sample in samples} == {"box0"}
    epochs = [s["value"] for s in samples if s["benchmark"] == "train" and s["metric"] == "epochs"]
    assert epochs == [2.0]
    box = tmp_path / "box0-home" / "orchestrate"
    assert not (box / "runs" / run.id).exists()  # torn down
    assert list((box / "payload").glob("*/.complete"))  # the payload stays cached by content hash
    assert api.leases(home=home) == {}
    assert "Accepted publickey" in server.log()


def test_the_same_payload_is_not_sent_to_a_box_twice(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], fake_payload: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", 1.0)])\n')
    inventory_file = inventory([sshd()])
    runs = [_rented(home, inventory_file, "--host", "box0", "--quiet", ORCHESTRATE_PAYLOAD_DIR=str(package))
            for _ in range(2)]
    assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    assert len(list((tmp_path / "box0-home" / "orchestrate" / "payload").glob("*/.complete"))) == 1
    first, second = ([event.detail or "" for event in api.run_detail(run.id, home=home).events if event.step == "push"]
                     for run in api.list_runs(home=home))
    assert "already there" not in first[-1] and "already there, not sent" in second[-1]


def test_a_box_with_another_host_key_is_refused_and_nothing_is_pushed(
    home: Path, sshd: Callable[..., Any], make_host_key: Callable[..., Path], inventory: Callable[..., Path],
    fake_payload: Callable[[str], Path], tmp_path: Path,
) -> None:
    # A stand-in payload: the run with the corrected inventory at the end runs it (the real one would train).
    package = fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", 1.0)])\n')
    genuine = sshd()
    pinned = genuine.host_key
    genuine.stop()
    impostor = sshd(port=genuine.port, host_key_path=make_host_key())
    inventory_file = inventory([impostor], host_key=pinned)
    result = _rented(home, inventory_file, "--host", "box0", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 1
    assert "host key" in result.stderr.lower() and impostor.host_key_fingerprint in result.stderr
    run = _only_run(home)
    assert _outcomes(home, run.id)["connect"] == "failed"
    assert "push" not in _outcomes(home, run.id)
    assert not (tmp_path / "box0-home").exists()
    assert "Accepted publickey" not in impostor.log()
    # Finding 2: the run never reached the box, so nothing of it is there: the machine is given back at once,
    # and `down --all` has nothing to fail on.
    machines = api.run_detail(run.id, home=home).machines
    assert [(machine.state, machine.touched) for machine in machines] == [("terminated", False)]
    assert api.leases(home=home) == {}
    down = run_cli(home, "down", "--all", ORCHESTRATE_INVENTORY=str(inventory_file))
    assert down.returncode == 0, down.stderr
    again = _rented(home, inventory([impostor], host_key=impostor.host_key), "--host", "box0",
                    ORCHESTRATE_PAYLOAD_DIR=str(package))
    # The corrected inventory is used; the box is not held by the first run.
    assert again.returncode == 0 and "held" not in again.stderr, again.stderr


def test_a_cut_ssh_connection_mid_run_does_not_cost_the_run(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], fake_payload: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + """
for i in range(40):
    print("tick", i, flush=True)
    time.sleep(0.1)
write([sample("train_throughput", "images_per_sec", 7.0)])
""")
    server = sshd()
    inventory_file = inventory([server])
    orchestrate = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--provider", "rented", "--host", "box0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=cli_env(home, ORCHESTRATE_INVENTORY=str(inventory_file), ORCHESTRATE_PAYLOAD_DIR=str(package)),
    )
    try:
        deadline = time.monotonic() + 60
        logs: list[Path] = []
        while time.monotonic() < deadline and not any("tick 5" in p.read_text() for p in logs):
            logs = list((tmp_path / "box0-home").glob("orchestrate/runs/*/payload.log"))
            time.sleep(0.1)
        assert logs, "the payload never started"
        assert server.cut_connections(), "no live SSH connection to cut"
        output, _ = orchestrate.communicate(timeout=120)
    finally:
        if orchestrate.poll() is None:
            orchestrate.kill()
    assert orchestrate.returncode == 0, output
    ticks = [line for line in output.splitlines() if "tick" in line]
    assert len(ticks) == 40 and len(set(ticks)) == 40  # every line once: tailing resumed at the last byte
    assert _only_run(home).state == "succeeded"
    assert [sample["value"] for sample in _samples(home)] == [7.0]


def test_two_runs_asking_for_one_box_never_run_on_it_together(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], fake_payload: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    spans = tmp_path / "spans.txt"
    package = fake_payload(FAKE_MAIN_HEADER + f"""
start = time.time(); time.sleep(1.5); end = time.time()
with open({str(spans)!r}, "a") as f:
    f.write(f"{{start}} {{end}}\\n")
write([sample("train_throughput", "images_per_sec", 1.0)])
""")
    inventory_file = inventory([sshd()])
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(_rented(
            home, inventory_file, "--host", "box0", "--lease-wait", "120", "--quiet",
            ORCHESTRATE_PAYLOAD_DIR=str(package),
        )))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    spans_seen = sorted(tuple(map(float, line.split())) for line in spans.read_text().splitlines())
    (_, first_end), (second_start, _) = spans_seen
    assert first_end <= second_start, "the two payloads overlapped on one box"


def test_a_busy_box_fails_clearly_when_the_wait_runs_out(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path]
) -> None:

    from orchestrator.store import Store

    inventory_file = inventory([sshd()])
    store = Store(home)
    store.create_run("r-holder", provider="rented", suite="smoke", name=None, spec={})
    assert store.acquire_lease("box0", "r-holder") is None
    store.close()
    result = _rented(home, inventory_file, "--host", "box0")
    assert result.returncode == 1
    assert "no free box after waiting 0 s: in use: box0 (run r-holder)" in result.stderr


def test_four_boxes_run_the_suite_in_parallel_with_results_costs_and_report_rows_per_host(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], fake_payload: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    spans = tmp_path / "spans.txt"
    package = fake_payload(FAKE_MAIN_HEADER + f"""
start = time.time(); time.sleep(2); end = time.time()
with open({str(spans)!r}, "a") as f:
    f.write(f"{{start}} {{end}}\\n")
write([sample("train_throughput", "images_per_sec", 10.0)])
""")
    servers = [sshd() for _ in range(4)]
    inventory_file = inventory(servers)
    args = [arg for i in range(4) for arg in ("--host", f"box{i}")]
    result = _rented(home, inventory_file, *args, ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 0, result.stdout + result.stderr
    # One results document came back from each box (its one sample names it), and each box was torn down.
    assert sorted(sample["host"] for sample in _samples(home)) == ["box0", "box1", "box2", "box3"]
    detail = api.run_detail(_only_run(home).id, home=home)
    terminated = sorted(str(m.machine_id) for m in detail.machines if m.state == "terminated")
    assert terminated == ["box0", "box1", "box2", "box3"]
    # The four payloads ran at once: every one started before any one ended.
    starts, ends = zip(*(map(float, line.split()) for line in spans.read_text().splitlines()), strict=True)
    assert len(starts) == 4 and max(starts) < min(ends)
    # Each box is billed for its own time at its own price; the run's cost is their sum.
    per_machine: dict[str, tuple[float, float]] = {}  # machine id → (billed seconds, USD), summed over its lines
    for line in detail.costs:
        billed, amount = per_machine.get(line.machine_id, (0.0, 0.0))
        per_machine[line.machine_id] = (billed + line.billed_seconds, amount + line.amount_usd)
    assert sorted(per_machine) == ["box0", "box1", "box2", "box3"]
    for billed, amount in per_machine.values():
        assert amount == pytest.approx(billed * 3.6 / 3600)
    # Finding 4: the report has a row per box and the run total: 4 × 10 img/s for 4 × $3.6/h.
    rows = json.loads(run_cli(home, "report", "--format", "json").stdout)
    assert [row["host"] for row in rows] == ["box0", "box1", "box2", "box3", "all 4"]
    total = rows[-1]
    assert total["train_images_per_sec"] == 40.0 and total["price_per_hour"] == pytest.approx(14.4)
    assert total["train_images_per_usd"] == pytest.approx(40 * 3600 / 14.4)
    samples = json.loads(run_cli(home, "report", "--view", "samples", "--format", "json").stdout)
    assert sorted(sample["host"] for sample in samples) == ["box0", "box1", "box2", "box3"]


def test_hostile_strings_in_the_spec_and_inventory_execute_nothing(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], fake_payload: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    package = fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", 1.0)])\n')
    server = sshd()
    hostile = f"x; touch {marker}; $(touch {marker}) `touch {marker}`"
    # A hostile param travels in the suite document; a hostile work directory on the command line, quoted.
    inventory_file = inventory([server], workdir=str(tmp_path / f"home {hostile}"))
    result = _rented(home, inventory_file, "--host", "box0", "--set", f"model={hostile}",
                     ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 0, result.stderr
    # A hostile interpreter name is run as one (missing) program, not as a shell command.
    inventory_file = inventory([server], python=f"python3; touch {marker}")
    result = _rented(home, inventory_file, "--host", "box0", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 1 and "lacks" in result.stderr
    assert not marker.exists()


def test_inventory_list_and_check_report_each_box(
    home: Path, sshd: Callable[..., Any], make_host_key: Callable[..., Path], inventory: Callable[..., Path]
) -> None:
    good = sshd()
    wrong_key = sshd(host_key_path=make_host_key())
    inventory_file = inventory([good, wrong_key])
    with open(inventory_file) as f:
        data = yaml.safe_load(f)
    data["hosts"][1]["host_key"] = good.host_key  # box1 presents another key than the pinned one
    inventory_file.write_text(yaml.safe_dump(data))
    env = {"ORCHESTRATE_INVENTORY": str(inventory_file)}
    listed = json.loads(run_cli(home, "inventory", "list", "--json", **env).stdout)
    assert [(r["name"], r["price_per_hour"]) for r in listed] == [("box0", 3.6), ("box1", 3.6)]
    check = run_cli(home, "inventory", "check", "--json", **env)
    assert check.returncode == 1
    by_name = {r["name"]: r for r in json.loads(check.stdout)}
    assert by_name["box0"]["reachable"] and by_name["box0"]["keras"] and by_name["box0"]["problem"] is None
    assert not by_name["box1"]["reachable"] and "host key" in by_name["box1"]["problem"].lower()


def test_multi_node_trains_one_model_across_two_boxes_with_tf_config_per_worker(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], tmp_path: Path
) -> None:
    from tests.integration.conftest import free_port

    inventory_file = inventory([sshd(), sshd()])
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump({
        "provider": "rented", "suite": "scaling", "multi_node": True, "multi_node_port": free_port(),
        "machine": {"hosts": ["box0", "box1"]},
        "params": {"per_replica_batch": 8, "image_size": 16, "steps": 4, "warmup_steps": 2, "repeats": 1,
                   "worker_timeout_s": 120},
    }))
    result = run_cli(home, "run", "-f", str(spec), ORCHESTRATE_INVENTORY=str(inventory_file))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    workers = sorted(
        (s["host"], s["worker_index"], s["workers"]) for s in _samples(home)
        if s["benchmark"] == "worker_train_throughput" and s["metric"] == "images_per_sec"
    )
    assert workers == [("box0", 0, 2), ("box1", 1, 2)]


def test_prepare_venv_creates_a_venv_once_and_reuses_it_by_requirements_hash(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], tmp_path: Path
) -> None:
    # No requirements (so nothing is downloaded): the venv is made, and the probe then says what it lacks.
    inventory_file = inventory([sshd()], prepare="venv", requirements=[])
    first = _rented(home, inventory_file, "--host", "box0")
    second = _rented(home, inventory_file, "--host", "box0")
    assert first.returncode == second.returncode == 1
    assert "lacks: keras tensorflow" in first.stderr and "prepare: venv" in first.stderr
    details = [event.detail or "" for run in api.list_runs(home=home)
               for event in api.run_detail(run.id, home=home).events if event.step == "prepare"]
    assert "created" in details[0] and "reused" in details[1]
    assert len(list((tmp_path / "box0-home" / "orchestrate" / "venvs").glob("*/.ready"))) == 1


def test_a_kept_rented_run_is_torn_down_later_by_down(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], fake_payload: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", 1.0)])\n')
    inventory_file = inventory([sshd()])
    kept = _rented(home, inventory_file, "--host", "box0", "--keep", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert kept.returncode == 0, kept.stderr
    run_id = _only_run(home).id
    run_dir = tmp_path / "box0-home" / "orchestrate" / "runs" / run_id
    assert (run_dir / "results.json").exists()
    down = run_cli(home, "down", run_id, ORCHESTRATE_INVENTORY=str(inventory_file))
    assert down.returncode == 0, down.stderr
    assert not run_dir.exists()
    assert [machine.state for machine in api.run_detail(run_id, home=home).machines] == ["terminated"]
    assert api.leases(home=home) == {}


def test_one_bad_box_of_two_fails_the_run_naming_it_and_both_are_released(
    home: Path, sshd: Callable[..., Any], make_host_key: Callable[..., Path], inventory: Callable[..., Path],
) -> None:
    good, other = sshd(), sshd()
    inventory_file = inventory([good, other])
    data = yaml.safe_load(inventory_file.read_text())
    data["hosts"][1]["host_key"] = good.host_key  # box1 will present another key than the pinned one
    inventory_file.write_text(yaml.safe_dump(data))
    result = _rented(home, inventory_file, "--host", "box0", "--host", "box1")
    assert result.returncode == 1
    assert "box1: " in result.stderr and "box0: " not in result.stderr.split("error:")[-1]
    assert api.leases(home=home) == {}
    assert "Accepted publickey" not in other.log()


def test_a_box_held_by_an_abandoned_run_is_refused_until_down_or_reclaim_stops_its_payload(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], fake_payload: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    """Finding 1: a SIGKILLed run's payload still trains on the box; a new run must never share the box with it."""
    from tests.conftest import group_alive

    marker = tmp_path / "first-started"
    package = fake_payload(FAKE_MAIN_HEADER + f"""
if not os.path.exists({str(marker)!r}):
    open({str(marker)!r}, "w").close()
    time.sleep(300)  # the first run's payload trains "for ever"
write([sample("train_throughput", "images_per_sec", 1.0)])
""")
    inventory_file = inventory([sshd()])
    env = cli_env(home, ORCHESTRATE_INVENTORY=str(inventory_file), ORCHESTRATE_PAYLOAD_DIR=str(package))
    first = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "--provider", "rented", "--host", "box0"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        pid_files: list[Path] = []
        # The pid file is written as the payload starts; the marker once its Python has got going: wait for both.
        while time.monotonic() < deadline and not (pid_files and marker.exists()):
            pid_files = [p for p in (tmp_path / "box0-home").glob("orchestrate/runs/*/pid") if p.read_text().strip()]
            time.sleep(0.1)
        assert pid_files and marker.exists(), "the first payload never started"
        first.kill()
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    pgid, first_run = int(pid_files[0].read_text()), pid_files[0].parent.name

    refused = _rented(home, inventory_file, "--host", "box0", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert refused.returncode == 1
    assert first_run in refused.stderr and f"orchestrate down {first_run}" in refused.stderr
    assert "--reclaim" in refused.stderr
    assert group_alive(pgid), "the abandoned payload must not have been touched"

    reclaimed = _rented(home, inventory_file, "--host", "box0", "--reclaim", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert reclaimed.returncode == 0, reclaimed.stderr
    assert not group_alive(pgid), "--reclaim stops the abandoned payload before the new one starts"
    states = {run.id: run.state for run in api.list_runs(home=home)}
    assert states[first_run] == "interrupted" and list(states.values()).count("succeeded") == 1
    assert api.leases(home=home) == {}


def test_orchestrate_ssh_reaches_a_kept_box_with_its_pinned_key_and_refuses_another(
    home: Path, sshd: Callable[..., Any], inventory: Callable[..., Path], fake_payload: Callable[[str], Path],
    make_host_key: Callable[..., Path],
) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", 1.0)])\n')
    box = sshd()
    inventory_file = inventory([box])
    kept = _rented(home, inventory_file, "--host", "box0", "--keep", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert kept.returncode == 0, kept.stderr
    run = _only_run(home)
    inside = run_cli(home, "ssh", run.id, "--", "cat", "results.json", ORCHESTRATE_INVENTORY=str(inventory_file))
    assert inside.returncode == 0, inside.stderr
    assert json.loads(inside.stdout)["run_id"] == run.id  # in the run directory, over SSH
    failing = run_cli(home, "ssh", run.id, "--", "sh", "-c", "exit 7", ORCHESTRATE_INVENTORY=str(inventory_file))
    assert failing.returncode == 7
    # The box is rebuilt: same address, another host key. ssh itself refuses it.
    box.stop()
    impostor = sshd(port=box.port, host_key_path=make_host_key())
    refused = run_cli(home, "ssh", run.id, "--", "true", ORCHESTRATE_INVENTORY=str(inventory_file))
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
    assert "Accepted publickey" not in impostor.log()
    wrong_node = run_cli(home, "ssh", run.id, "--node", "2", ORCHESTRATE_INVENTORY=str(inventory_file))
    assert wrong_node.returncode == 2 and "invalid --node: received 2" in wrong_node.stderr
