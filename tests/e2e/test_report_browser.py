"""The HTML report from a real store, opened in headless Chromium: every chart drawn, no console errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.report.html import CHARTS
from tests.conftest import FAKE_MAIN_HEADER, REPO, run_cli

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts"
HOSTILE = "<script>alert(1)</script>"
# Curve points with the metadata a training recipe records, two batch sizes, and a deployment measurement.
PAYLOAD = FAKE_MAIN_HEADER + '''
meta = {"model": "small_cnn", "precision": "float32"}
def at(benchmark, metric, value, **extra):
    return {"benchmark": benchmark, "metric": metric, "value": value, "unit": "", "metadata": {**meta, **extra}}
write([
    at("train_throughput", "images_per_sec", 120.0, batch_size=32),
    at("train_throughput", "images_per_sec", 210.0, batch_size=64),
    at("train_curve", "accuracy", 0.55, batch_size=32, epoch=1, elapsed_s=4.0, restored=False),
    at("train_curve", "accuracy", 0.82, batch_size=32, epoch=2, elapsed_s=8.0, restored=False),
    at("train_curve", "accuracy", 0.91, batch_size=32, epoch=3, elapsed_s=12.0, restored=False),
    at("deploy", "model_bytes_gzip", 1500000.0, batch_size=32),
    at("deploy", "latency_ms_p50", 2.5, batch_size=32),
])
'''


def _chromium(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    """Runs headless Chromium on a local file with networking features off and console messages on stderr."""
    return subprocess.run(
        [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         *mode, page.as_uri()],
        capture_output=True, text=True, timeout=60,
    )


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's `chromium`)")
def test_the_html_report_draws_every_chart_in_chromium_without_console_errors(
    home: Path, tmp_path: Path, fake_payload: Callable[[str], Path]
) -> None:
    package = fake_payload(PAYLOAD)
    for name, price in ((HOSTILE, "0.90"), ("v100-spot", "3.06")):
        result = run_cli(home, "run", "--provider", "local", "--suite", "smoke", "--name", name,
                         "--price-per-hour", price, ORCHESTRATE_PAYLOAD_DIR=str(package))
        assert result.returncode == 0, result.stdout + result.stderr
    page = tmp_path / "report.html"
    result = run_cli(home, "report", "--format", "html", "-o", str(page))
    assert result.returncode == 0, result.stderr
    missing = run_cli(home, "report", "--format", "html")
    assert missing.returncode != 0 and "-o" in missing.stderr

    dumped = _chromium(page, tmp_path / "profile-dom", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert 'data-ready="true"' in dom, "the report's script did not run to its end"
    for chart in CHARTS:
        figure = re.search(rf'<figure class="chart" data-chart="{chart}".*?</figure>', dom, re.S)
        assert figure, f"chart {chart} is not in the DOM"
        assert len(re.findall(r'<(circle|rect) class="mark"', figure.group(0))) >= 1, f"chart {chart} drew nothing"
    assert HOSTILE not in dom
    # Chromium logs every console message, console.error and uncaught exceptions included, as "INFO:CONSOLE"
    # without its level; the report logs nothing, so any console line is a failure.
    assert not _console(dumped.stderr), "\n".join(_console(dumped.stderr))

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report-html.png"
    screenshot.unlink(missing_ok=True)
    shot = _chromium(page, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1280,2000",
                     "--hide-scrollbars")
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    assert not _console(shot.stderr), "\n".join(_console(shot.stderr))
