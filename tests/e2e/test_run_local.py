"""`orchestrate run --provider local` end to end, as real processes: no mocks of the lifecycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest

from orchestrator import api
from orchestrator.store import RunRow
from tests.conftest import FAKE_MAIN_HEADER, cli_env, group_alive, run_cli

pytestmark = pytest.mark.slow


def _only_run(home: Path) -> RunRow:
    """The store's one run (the test fails when there is not exactly one)."""
    [run] = api.list_runs(home=home)
    return run


def _outcomes(home: Path, run_id: str) -> dict[str, str | None]:
    """Each step of the run with its (last) outcome."""
    return {event.step: event.outcome for event in api.run_detail(run_id, home=home).events}


def _machine_states(home: Path, run_id: str) -> list[str]:
    """The state of each machine row of the run, in the order they were recorded."""
    return [machine.state for machine in api.run_detail(run_id, home=home).machines]


def _samples(home: Path) -> list[dict[Hashable, Any]]:
    """Every run's samples, in order: run_id, host, benchmark, metric, value and unit of each."""
    samples, _ = api.report_frames(home=home)
    measured = samples[samples["metric"].notna()]  # a run without samples has one row of NaN
    return measured[["run_id", "host", "benchmark", "metric", "value", "unit"]].to_dict("records")


def _recorded(home: Path) -> tuple[list[RunRow], list[api.RunDetail], list[dict[Hashable, Any]]]:
    """Everything the store holds: runs, each run's events, machines and costs, and the samples."""
    runs = api.list_runs(home=home)
    return runs, [api.run_detail(run.id, home=home) for run in runs], _samples(home)


def _payload_started(home: Path, deadline: float) -> tuple[int, Path]:
    """Waits for a local run's payload to start; returns its process group and machine directory."""
    pid_files: list[Path] = []
    while time.monotonic() < deadline and not pid_files:
        pid_files = [p for p in (home / "machines").glob("*/pid") if p.read_text().strip()]
        time.sleep(0.1)
    assert pid_files, "the payload never started"
    return int(pid_files[0].read_text()), pid_files[0].parent


def test_a_smoke_run_succeeds_and_is_recorded_priced_reported_and_torn_down(home: Path) -> None:
    result = run_cli(home, "run", "--provider", "local", "--suite", "smoke", "--price-per-hour", "0.36")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[keras_bench]" in result.stdout  # the payload's log was tailed live
    run = _only_run(home)
    run_id, duration = run.id, run.duration_s
    assert run.state == "succeeded" and duration is not None and duration > 0
    assert not (home / "machines" / run_id).exists()
    detail = api.run_detail(run_id, home=home)
    steps = [event.step for event in detail.events if event.outcome == "ok"]
    assert steps == ["plan", "provision", "launch", "connect", "prepare", "push", "execute", "collect", "teardown",
                     "price", "record"]
    assert detail.costs
    cost = sum(line.amount_usd for line in detail.costs)
    assert cost == pytest.approx(0.36 * duration / 3600, rel=0.2)

    report = run_cli(home, "report", "--last", "1", "--format", "json")
    [row] = json.loads(report.stdout)
    assert row["train_images_per_sec"] > 0 and row["inference_images_per_sec"] > 0
    assert row["test_accuracy"] >= 0.95
    assert row["duration_s"] == pytest.approx(duration)

    status = run_cli(home, "status")
    assert run_id in status.stdout and "succeeded" in status.stdout
    timeline = run_cli(home, "status", run_id[:-2])
    assert "execute" in timeline.stdout and "teardown" in timeline.stdout
    document = json.loads(run_cli(home, "status", run_id, "--json").stdout)
    assert {tuple(sorted(line)) for line in document["costs"]} == {(
        "amount_usd", "billed_seconds", "component", "machine_id", "price_per_hour", "rule", "run_id", "seconds")}
    assert {line["run_id"] for line in document["costs"]} == {run_id}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_payloads_process_group_tears_down_and_records_interrupted(
    home: Path, signum: signal.Signals
) -> None:
    orchestrate = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--provider", "local", "--set", "epochs=10000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(home),
    )
    try:
        deadline = time.monotonic() + 120
        pgid, machine_dir = _payload_started(home, deadline)
        # Let it get into training (Keras imported, fitting) before the signal lands.
        log = machine_dir / "payload.log"
        while time.monotonic() < deadline and "epoch 1/" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.2)
        orchestrate.send_signal(signum)
        output, _ = orchestrate.communicate(timeout=60)
    finally:
        if orchestrate.poll() is None:
            orchestrate.kill()
    assert orchestrate.returncode == 130, output
    assert not group_alive(pgid), "a payload process outlived the run"
    assert not machine_dir.exists()
    run = _only_run(home)
    assert run.state == "interrupted" and run.error is not None and signum.name in run.error
    outcomes = _outcomes(home, run.id)
    assert outcomes["execute"] == "interrupted" and outcomes["teardown"] == "ok"


def test_a_crashing_payload_fails_the_run_shows_its_log_tail_and_keeps_its_results(
    home: Path, fake_payload: Callable[[str], Path]
) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + """
print("epoch 1 done", flush=True)
write([sample("train_throughput", "images_per_sec", 123.0)],
      errors=[{"stage": "train", "type": "RuntimeError", "message": "boom"}])
print("Traceback: RuntimeError: boom", file=sys.stderr, flush=True)
sys.exit(1)
""")
    result = run_cli(home, "run", "--provider", "local", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr  # the log tail
    assert "exited with code 1" in result.stderr
    run = _only_run(home)
    assert run.state == "failed" and run.log_tail is not None and "boom" in run.log_tail
    assert [(sample["benchmark"], sample["value"]) for sample in _samples(home)] == [("train_throughput", 123.0)]
    assert not list((home / "machines").iterdir())


def test_an_invalid_results_document_is_a_failed_collect_and_nothing_is_ingested(
    home: Path, fake_payload: Callable[[str], Path]
) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + """
write([sample("train_throughput", "images_per_sec", 1.0), sample("train", "vibes", 1.0)])
""")
    result = run_cli(home, "run", "--provider", "local", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 1
    assert "results document is invalid at samples/1/metric" in result.stderr
    run = _only_run(home)
    assert run.state == "failed"
    assert _outcomes(home, run.id)["collect"] == "failed"
    assert _samples(home) == []


def test_dry_run_prints_the_plan_and_creates_nothing(home: Path) -> None:
    result = run_cli(home, "run", "--provider", "local", "--suite", "smoke", "--dry-run")
    assert result.returncode == 0
    assert "provision → connect" in result.stdout and "estimate" in result.stdout
    assert not home.exists()
    # And with an existing store: no row anywhere.
    run_cli(home, "status")
    before = _recorded(home)
    run_cli(home, "run", "--dry-run")
    assert _recorded(home) == before
    assert not (home / "machines").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--bogus"], "--bogus"),
        (["run", "--provider", "azur"],
         "invalid provider: received 'azur'; accepted: one of aws, azure, local, rented"),
        (["run", "--set", "epochs=-x"], "invalid params.epochs: received '-x'; accepted: an integer"),
        (["run", "--set", "epoch=3"], "invalid params: received 'epoch'"),
        (["run", "--backend", "theano"], "'theano' is not one of"),
        (["report", "--format", "pdf"], "'pdf' is not one of"),
        (["status", "r-nope"], "no run with id 'r-nope'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(home: Path, args: list[str], expected: str) -> None:
    result = run_cli(home, *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("hint:")]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    if args[0] == "run":
        assert not home.exists()


def test_keep_leaves_the_machine_and_down_removes_it(home: Path, fake_payload: Callable[[str], Path]) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", 5.0)])\n')
    result = run_cli(home, "run", "--keep", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 0, result.stderr
    run_id = _only_run(home).id
    machine_dir = home / "machines" / run_id
    assert (machine_dir / "results.json").exists()
    assert _machine_states(home, run_id) == ["running"]
    down = run_cli(home, "down", run_id)
    assert down.returncode == 0 and "terminated 1 machine" in down.stdout
    assert not machine_dir.exists()
    assert _machine_states(home, run_id) == ["terminated"]
    assert "nothing to tear down" in run_cli(home, "down", "--all").stdout


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["run", "--help"], ["report", "--help"], ["status", "--help"], ["inventory", "--help"],
     ["catalog", "--help"], ["catalog", "refresh", "--help"]],
)
def test_help_imports_neither_tensorflow_keras_boto3_nor_azure(argv: list[str]) -> None:
    probe = (
        "import sys\nfrom orchestrator.cli import main\nsys.argv = ['orchestrate', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules}\n"
        "               & {'tensorflow', 'keras', 'boto3', 'azure', 'pandas', 'paramiko', 'botocore'})\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60,
                            env={**os.environ})
    assert "Example" in result.stdout
    assert "HEAVY []" in result.stdout


def test_the_real_payload_failing_mid_run_fails_the_run_with_its_message(home: Path) -> None:
    # Only the running suite knows how many steps there are, so this passes the plan-time check.
    result = run_cli(home, "run", "--provider", "local", "--set", "warmup_steps=100000")
    assert result.returncode == 1
    assert "warmup_steps" in result.stderr and "100000" in result.stderr  # the payload's line, in the log tail
    run = _only_run(home)
    assert run.state == "failed" and run.log_tail is not None and "warmup_steps" in run.log_tail


def test_a_run_spec_file_drives_the_run_and_reports_go_to_files(
    home: Path, tmp_path: Path, fake_payload: Callable[[str], Path]
) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + """
assert suite["params"]["epochs"] == 2 and suite["params"]["batch_size"] == 8, suite
write([sample("train_throughput", "images_per_sec", 42.0)])
""")
    spec = tmp_path / "run.yaml"
    spec.write_text("provider: local\nsuite: smoke\nparams: {epochs: 5, batch_size: 8}\nname: from-file\n")
    result = run_cli(home, "run", "-f", str(spec), "--set", "epochs=2", ORCHESTRATE_PAYLOAD_DIR=str(package))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [run.name for run in api.list_runs(home=home)] == ["from-file"]
    for fmt in ("md", "csv", "json", "table"):
        out = tmp_path / f"report.{fmt}"
        assert run_cli(home, "report", "--format", fmt, "-o", str(out)).returncode == 0
        assert "42" in out.read_text()
    status = json.loads(run_cli(home, "status", "--json").stdout)
    assert [r["state"] for r in status] == ["succeeded"]


def test_a_machine_without_the_backend_fails_in_prepare_and_is_still_torn_down(home: Path) -> None:
    import importlib.util

    missing = [backend for backend in ("torch", "jax") if importlib.util.find_spec(backend) is None]
    if not missing:
        pytest.skip("both jax and torch are installed here, so prepare would pass")
    result = run_cli(home, "run", "--backend", missing[0])
    assert result.returncode == 1
    assert f"lacks: {missing[0]}" in result.stderr and "hint:" in result.stderr
    outcomes = _outcomes(home, _only_run(home).id)
    assert outcomes["prepare"] == "failed" and outcomes["teardown"] == "ok" and "execute" not in outcomes
    assert not list((home / "machines").iterdir())


def test_a_param_the_payload_rejects_is_refused_before_anything_is_created(home: Path) -> None:
    result = run_cli(home, "run", "--suite", "accuracy", "--set", "dropout=1.5")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: invalid param 'dropout': expected \"auto\" or a number in [0, 1), received 1.5"
    )
    assert not home.exists()
    ok = run_cli(home, "run", "--suite", "accuracy", "--set", "dropout=0.3", "--dry-run")
    assert ok.returncode == 0 and "dropout=0.3" in ok.stdout


def test_report_all_with_references_and_a_baseline(home: Path, fake_payload: Callable[[str], Path]) -> None:
    # The stand-in payload reports the "epochs" param as its throughput, so two runs differ by a known factor.
    package = fake_payload(
        FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", float(suite["params"]["epochs"]))])\n'
    )
    for epochs in (50, 100):
        result = run_cli(home, "run", "--price-per-hour", "3.6", "--set", f"epochs={epochs}",
                         ORCHESTRATE_PAYLOAD_DIR=str(package))
        assert result.returncode == 0, result.stderr
    first = api.list_runs(home=home)[0].id  # oldest first
    result = run_cli(home, "report", "--all", "--references", "--baseline", first, "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["run_id"]: row for row in json.loads(result.stdout)}
    assert rows["ref-01"]["train_images_per_sec"] == 51.9  # K80, TensorFlow's own benchmark page
    speedups = sorted(row["speedup_over_baseline"] for key, row in rows.items() if key.startswith("r-"))
    assert speedups == pytest.approx([1.0, 2.0])
    assert all(row["train_images_per_usd"] > 0 for key, row in rows.items() if key.startswith("r-"))
    both = run_cli(home, "report", "--all", "--last", "1")
    assert both.returncode == 2 and "--all" in both.stderr


def test_a_deploy_run_prints_the_trade_off_table_and_report_shows_it_again(home: Path) -> None:
    """The deploy suite end to end at a tiny size: real training, pruning, TFLite conversion and LiteRT."""
    result = run_cli(home, "run", "--provider", "local", "--suite", "deploy", "--set", "limit=240", "--set", "epochs=2",
                     "--set", "fine_tune_epochs=1", "--set", "sparsities=[0.75]", "--set", "prune_then_int8=[0.75]",
                     "--set", "quantizations=[int8]", "--set", "latency_runs=5", timeout=300,
                     COLUMNS="200")
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout[result.stdout.index("deployment trade-offs"):]
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.startswith("│")}
    assert list(rows) == ["float32", "int8", "pruned_75", "pruned_75_int8"]
    assert "│  1.000 │  1.000 │" in rows["float32"]  # the baseline against itself
    assert "0.750" in rows["pruned_75"]  # its sparsity, measured from the weights
    again = run_cli(home, "report", "--last", "1", "--view", "deploy", "--format", "json")
    records = json.loads(again.stdout)
    assert [r["variant"] for r in records] == list(rows)
    by_variant = {r["variant"]: r for r in records}
    assert by_variant["int8"]["size ×"] < 0.35 and by_variant["pruned_75"]["gzip ×"] < 0.6
    assert all(r["p50 ms"] > 0 and r["img/s"] > 0 for r in records)


def test_a_killed_orchestrator_leaves_an_abandoned_run_that_status_names_and_down_cleans_up(
    home: Path, fake_payload: Callable[[str], Path]
) -> None:
    """SIGKILL cannot be caught: the run stays 'running', and status must say that nobody is running it."""
    package = fake_payload(FAKE_MAIN_HEADER + "import time\ntime.sleep(300)\n")
    launched = time.monotonic()
    orchestrate = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--provider", "local", "--price-per-hour", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(home, ORCHESTRATE_PAYLOAD_DIR=str(package)),
    )
    try:
        pgid, _ = _payload_started(home, time.monotonic() + 60)
        payload_seen = time.monotonic()
        live = json.loads(run_cli(home, "status", "--json").stdout)
        assert [r["abandoned"] for r in live] == [False]  # its orchestrator is still there
        orchestrate.kill()
        orchestrate.wait(timeout=30)
    finally:
        if orchestrate.poll() is None:
            orchestrate.kill()
    [run] = json.loads(run_cli(home, "status", "--json").stdout)
    assert run["abandoned"] and run["state"] not in ("succeeded", "failed", "interrupted")
    table = run_cli(home, "status", COLUMNS="200")
    assert "abandoned" in table.stdout and "orchestrate down RUN" in table.stdout
    assert group_alive(pgid)  # the payload outlived its orchestrator: the leak `down` is for
    down_started = time.monotonic()
    down = run_cli(home, "down", run["id"])
    down_ended = time.monotonic()
    assert down.returncode == 0 and "terminated 1 machine" in down.stdout
    assert not group_alive(pgid)
    # Finding 3: the run is no longer "running abandoned" but interrupted, with the machine's time priced.
    [after] = json.loads(run_cli(home, "status", "--json").stdout)
    assert after["state"] == "interrupted" and not after["abandoned"]
    # $1 a second, billed from the launch to the teardown by `down`, in whole seconds rounded up (so up to one more).
    assert down_started - payload_seen <= after["cost_usd"] <= down_ended - launched + 1.0
    assert "abandoned" in after["error"]
    assert _machine_states(home, run["id"]) == ["terminated"]
    assert "nothing to tear down" in run_cli(home, "down", "--all").stdout


def test_down_all_finds_and_stops_machines_the_store_never_recorded(home: Path) -> None:
    from orchestrator.remote.detached import DetachedProcess
    from orchestrator.remote.transport import LocalTransport

    orphan = home / "machines" / "r-orphan"
    orphan.mkdir(parents=True)
    pgid = DetachedProcess(LocalTransport(), str(orphan)).start(["sleep", "300"], {})
    assert group_alive(pgid)
    result = run_cli(home, "down", "--all")
    assert result.returncode == 0, result.stderr
    assert "r-orphan: terminated 1 machine(s): localhost" in result.stdout
    assert not orphan.exists() and not group_alive(pgid)
