"""`python -m keras_bench --check`: the params check the orchestrator runs before launching anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _check(tmp_path: Path, suite: str, params: dict[str, object]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"schema_version": 1, "suite": suite, "run_id": "r-check", "params": params}))
    probe = (
        "import runpy, sys\nsys.argv = ['keras_bench', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('keras_bench', run_name='__main__')\nfinally:\n"
        "    print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'tensorflow', 'jax'}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", probe, "--suite", str(path), "--check"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(BENCHMARKS)},
    )


@pytest.mark.parametrize("suite", ["smoke", "throughput", "accuracy", "transfer", "hparams", "pipeline", "scaling",
                                   "deploy"])
def test_every_suites_defaults_pass_the_check_without_importing_keras(tmp_path: Path, suite: str) -> None:
    result = _check(tmp_path, suite, {})
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert not (tmp_path / "results.json").exists()


def test_a_bad_param_fails_the_check_with_one_line(tmp_path: Path) -> None:
    result = _check(tmp_path, "throughput", {"batch_sizes": [32, -1]})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("keras_bench: error: param 'batch_sizes'") and "-1" in line
