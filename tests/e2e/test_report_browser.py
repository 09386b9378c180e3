"""The HTML report from a real store, opened in headless Chromium: every chart drawn, no console errors."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cost import CostLine
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


def screenshot(page: Path, tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    """Saves a screenshot of the page as test-artifacts/NAME (for a person to look at) and returns Chromium's run."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    shot = _chromium(page, tmp_path / "profile-shot", f"--screenshot={path}", "--window-size=1280,2000",
                     "--hide-scrollbars")
    assert shot.returncode == 0 and path.stat().st_size > 10_000, shot.stderr[-2000:]
    return shot


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


# Run in the page after it has laid out: every text of a chart inside its SVG and clear of the other texts, and
# every legend entry a colour and a label that no other entry of the legend has. Writes what is wrong as JSON.
LAYOUT_CHECK = """
<script>
(function () {
  var problems = [];
  var inside = function (r, box) {
    return r.left >= box.left - 0.5 && r.right <= box.right + 0.5 &&
      r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5;
  };
  document.querySelectorAll('figure.chart').forEach(function (figure) {
    var chart = figure.getAttribute('data-chart');
    var svg = figure.querySelector('svg');
    if (svg) {
      var box = svg.getBoundingClientRect();
      var texts = Array.prototype.map.call(svg.querySelectorAll('text'), function (t) {
        return {text: t.textContent, rect: t.getBoundingClientRect()};
      });
      texts.forEach(function (a, i) {
        if (!inside(a.rect, box)) { problems.push(chart + ': clipped "' + a.text + '"'); }
        texts.slice(i + 1).forEach(function (b) {
          var w = Math.min(a.rect.right, b.rect.right) - Math.max(a.rect.left, b.rect.left);
          var h = Math.min(a.rect.bottom, b.rect.bottom) - Math.max(a.rect.top, b.rect.top);
          if (w > 0.5 && h > 0.5) { problems.push(chart + ': "' + a.text + '" overlaps "' + b.text + '"'); }
        });
      });
    }
    var colours = {}, labels = {};
    figure.querySelectorAll('ul.legend li').forEach(function (li) {
      var colour = getComputedStyle(li.querySelector('.swatch')).backgroundColor, label = li.textContent;
      if (colours[colour]) {
        problems.push(chart + ': colour ' + colour + ' names "' + colours[colour] + '" and "' + label + '"');
      }
      if (labels[label]) { problems.push(chart + ': legend label "' + label + '" twice'); }
      if (/[\\u0000-\\u001f\\u007f-\\u009f]/.test(label)) {
        problems.push(chart + ': control character in "' + label + '"');
      }
      colours[colour] = label; labels[label] = true;
    });
  });
  var out = document.createElement('pre');
  out.id = 'layout-problems';
  out.textContent = JSON.stringify(problems);
  document.body.appendChild(out);
})();
</script>
"""


def _layout_problems(page: Path, profile: Path) -> list[str]:
    """Opens a copy of the report with :data:`LAYOUT_CHECK` added and returns the problems it found."""
    checked = page.with_name("checked-" + page.name)
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", LAYOUT_CHECK + "</body>"),
                       encoding="utf-8")
    dumped = _chromium(checked, profile, "--dump-dom", "--window-size=1280,2000")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    found = re.search(r'<pre id="layout-problems">(.*?)</pre>', dumped.stdout, re.S)
    assert found, "the layout check did not run"
    return list(json.loads(html.unescape(found.group(1))))


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
    assert _layout_problems(page, tmp_path / "profile-layout") == []

    shot = screenshot(page, tmp_path, "report-html.png")
    assert not _console(shot.stderr), "\n".join(_console(shot.stderr))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's `chromium`)")
def test_charts_of_many_cheap_runs_keep_every_label_inside_and_every_legend_entry_distinct(
    home: Path, tmp_path: Path
) -> None:
    """Fourteen priced runs (more than the palette's colours), two sharing a name, one named with control
    characters, images per dollar in the millions, and one batch size only: what used to clip and repeat."""
    from orchestrator.store import Store

    with Store(home) as store:
        for i in range(14):
            name = "v100-spot" if i < 2 else "evil\x1b[31m\u202ename" if i == 2 else f"spot box {i:02d}"
            store.create_run(f"r-{i:02d}", provider="local", suite="throughput", name=name, spec={})
            metadata = {"model": "small_cnn", "batch_size": 32}
            samples = [{"benchmark": "train_throughput", "metric": "images_per_sec", "value": 1500.0 + 37 * i,
                        "unit": "images/s", "metadata": metadata}]
            price = 0.04 + 0.07 * i
            store.finish_run(
                f"r-{i:02d}", state="succeeded", duration_s=3600.0, error=None, log_tail=None,
                results={"m": {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}},
                costs=[CostLine(component="compute", seconds=3600.0, billed_seconds=3600.0, price_per_hour=price,
                                amount_usd=price, rule="per_second", machine_id="m")],
            )
    page = tmp_path / "report.html"
    result = run_cli(home, "report", "--format", "html", "-o", str(page))
    assert result.returncode == 0, result.stderr
    assert _layout_problems(page, tmp_path / "profile") == []
