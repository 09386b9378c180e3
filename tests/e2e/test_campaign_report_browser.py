"""The campaign's HTML report, opened in headless Chromium: heat-maps coloured, every text in place, no console
errors."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.report.campaign import best_configurations, campaign_frame, render_campaign_html
from tests.e2e.test_report_browser import CHROMIUM, HOSTILE, LAYOUT_CHECK, _chromium, _console, screenshot
from tests.unit.test_report_campaign import GRID, campaign_cells, campaign_summary

pytestmark = pytest.mark.slow

# Run in the page after it has laid out: each heat-map square's colour as the browser paints it, and its accuracy
# drawn inside it. Writes what it found as JSON.
HEAT_CHECK = """
<script>
(function () {
  var found = {squares: 0, fills: [], problems: []};
  document.querySelectorAll('svg.heat-map').forEach(function (svg) {
    svg.querySelectorAll('rect.heat').forEach(function (rect) {
      found.squares += 1;
      found.fills.push(getComputedStyle(rect).fill);
      var text = rect.nextElementSibling, box = rect.getBoundingClientRect();
      if (!text || text.getAttribute('class') !== 'heat-value') {
        found.problems.push('no accuracy after a square');
        return;
      }
      var r = text.getBoundingClientRect();
      if (r.width === 0 || r.left < box.left || r.right > box.right || r.top < box.top || r.bottom > box.bottom) {
        found.problems.push('"' + text.textContent + '" is not inside its square');
      }
    });
  });
  var out = document.createElement('pre');
  out.id = 'heat-check';
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
})();
</script>
"""


def _samples() -> pd.DataFrame:
    """Per-epoch accuracy points of one accuracy run, for the machine's accuracy curves."""
    return pd.DataFrame([
        {"run_id": "r-acc-6", "name": None, "host": "box", "benchmark": "train_curve", "metric": "accuracy",
         "value": accuracy, "elapsed_s": seconds, "model": "cnn"}
        for seconds, accuracy in ((20.0, 0.61), (40.0, 0.8), (60.0, 0.88))
    ])


def _found(dom: str, element_id: str) -> object:
    match = re.search(rf'<pre id="{element_id}">(.*?)</pre>', dom, re.S)
    assert match, f"the page's {element_id} script did not run"
    return json.loads(html.unescape(match.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's `chromium`)")
def test_the_campaign_report_draws_its_heat_map_in_chromium_with_every_text_inside(tmp_path: Path) -> None:
    frame = campaign_frame(campaign_cells(), campaign_summary())
    page = tmp_path / "campaign.html"
    page.write_text(render_campaign_html(f"sweep {HOSTILE}", frame, best_configurations(frame), _samples()),
                    encoding="utf-8")
    checked = tmp_path / "checked-campaign.html"
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", LAYOUT_CHECK + HEAT_CHECK + "</body>"),
                       encoding="utf-8")

    dumped = _chromium(checked, tmp_path / "profile-dom", "--dump-dom", "--window-size=1280,2000")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert 'data-ready="true"' in dom, "the report's script did not run to its end"
    # Chromium logs every console message, errors and uncaught exceptions included, as "INFO:CONSOLE".
    assert not _console(dumped.stderr), "\n".join(_console(dumped.stderr))
    assert HOSTILE not in dom
    assert _found(dom, "layout-problems") == []
    heat = _found(dom, "heat-check")
    assert isinstance(heat, dict) and heat["problems"] == []
    assert heat["squares"] == len(GRID)
    assert all(re.fullmatch(r"rgb\(\d+, \d+, \d+\)", fill) for fill in heat["fills"]), heat["fills"]
    assert len(set(heat["fills"])) == len(GRID), "each accuracy should have its own colour"
    assert len(re.findall(r'<circle class="mark"', dom)) >= 2 + 3  # the batch-size curve and the accuracy curve

    screenshot(page, tmp_path, "campaign-report-html.png")
