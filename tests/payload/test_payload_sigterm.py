"""SIGTERM is how the orchestrator stops a payload: an expected stop, told in one line, never a traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The real CLI and its SIGTERM handler, with a suite that trains forever without Keras (so the test takes seconds).
ENDLESS_SUITE = """
import sys, time
from keras_bench.cli import main
from keras_bench.params import positive_int
from keras_bench.suites import Suite

def train_forever(params, recorder):
    with recorder.phase("train", "compute"):
        recorder.add("train", "epochs", 1, "epochs", {})
    print("[test] training", flush=True)
    while True:
        with recorder.phase("train", "compute"):
            time.sleep(0.05)

suites = {"smoke": Suite("smoke", "trains until stopped", (positive_int("epochs", 2),), train_forever)}
sys.exit(main(sys.argv[1:], suites=suites))
"""


def test_sigterm_stops_the_payload_with_one_line_in_its_log_and_no_traceback(
    tmp_path: Path, payload_env: dict[str, str], schema_validator: Any
) -> None:
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"schema_version": 1, "suite": "smoke", "run_id": "r-term", "params": {}}))
    out, log_path = tmp_path / "results.json", tmp_path / "payload.log"
    with log_path.open("wb") as log:  # stdout and stderr in one file, as the orchestrator's payload.log
        process = subprocess.Popen([sys.executable, "-c", ENDLESS_SUITE, "--suite", str(suite), "--out", str(out)],
                                   env=payload_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "[test] training" not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log_path.read_text()
    assert process.returncode == 1, text
    assert "Traceback" not in text
    assert [line for line in text.splitlines() if "SIGTERM" in line] == ["keras_bench: stopped: received SIGTERM"]
    document = json.loads(out.read_text())
    assert list(schema_validator.iter_errors(document)) == []
    assert document["errors"] == [{"stage": "train", "type": "TerminatedError", "message": "received SIGTERM"}]
    assert [sample["metric"] for sample in document["samples"]] == ["epochs"]
