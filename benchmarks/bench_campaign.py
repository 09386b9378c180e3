"""`make bench`: what a campaign adds to its runs, written into docs/performance.md (issue 15).

Four loopback "rented boxes" (real OpenSSH `sshd` on 127.0.0.1) and a fixed payload that sleeps 5 s:
  * a campaign of 16 cells (4 per box) with ``--parallel 4`` — four waves of four cells, one cell per box at once;
  * against 4 cells run one per box, one after another, each with a plain ``orchestrate run`` — the same four
    waves' worth of cell time with nothing of the campaign's (its planning, its processes, its store records).
The target: the campaign takes at most 1.3× that. Also: the dev-box sweep (real Keras training, 10 cells) end to end.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from bench_remote import fixed_payload, inventory, loopback_boxes
from benchlib import (
    BENCHMARKS,
    ORCHESTRATE,
    Section,
    bench_parser,
    make_bench_command,
    measured_on,
    median_range,
    prepare_sshd,
    timed_run,
)

SECTION = Section("campaign")


def _timed(args: list[str], env: dict[str, str]) -> float:
    return timed_run([ORCHESTRATE, *args], env, timeout_s=1800)


def _sweep(root: Path, name: str, cells_per_box: int) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "suites": ["smoke"], "machines": [{"provider": "rented", "host": f"box{i}"} for i in range(4)],
        "params": {"seed": list(range(cells_per_box))}, "parallel": 4}))
    return path


def _heat_squares_drawn(root: Path, env: dict[str, str]) -> int:
    """Writes the dev-box campaign's HTML report and counts the heat-map squares Chromium's DOM holds."""
    import shutil

    page = root / "dev-box.html"
    subprocess.run([ORCHESTRATE, "campaign", "report", "dev-box", "--format", "html", "-o", str(page)], check=True,
                   capture_output=True, env=env, timeout=300)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={root}/chrome",
                          "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    return len(re.findall(r'<rect class="heat"', dom))


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    prepare_sshd()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with loopback_boxes(root, 4) as boxes:
            env = {**os.environ, "ORCHESTRATE_INVENTORY": str(inventory(root, boxes)),
                   "ORCHESTRATE_PAYLOAD_DIR": str(fixed_payload(root, 5.0))}
            campaign, baseline = [], []
            for repeat in range(args.repeats):
                home = {**env, "ORCHESTRATE_HOME": str(root / f"home-{repeat}")}
                _timed(["run", "--provider", "rented", "--host", "box0", "--quiet"], home)  # the payload cached
                baseline.append(sum(_timed(["run", "--provider", "rented", "--host", f"box{i}", "--quiet"], home)
                                    for i in range(4)))
                campaign.append(_timed(["sweep", str(_sweep(root, f"overhead-{repeat}", 4))], home))
        dev_home = {**os.environ, "ORCHESTRATE_HOME": str(root / "dev-box-home")}
        started = time.perf_counter()
        dev_box = subprocess.run([ORCHESTRATE, "sweep", str(BENCHMARKS / "sweeps" / "dev-box.yaml")], check=True,
                                 capture_output=True, text=True, env=dev_home, timeout=1800)
        dev_box_s = time.perf_counter() - started
        last = dev_box.stdout.strip().splitlines()[-2]
        cells = re.search(r"(\d+) succeeded", last)
        squares = _heat_squares_drawn(root, dev_home)

    ratio = sorted(campaign)[len(campaign) // 2] / sorted(baseline)[len(baseline) // 2]
    section = SECTION.text([
        "## Campaign overhead (issue 15)",
        "",
        f"{measured_on()}, no GPU; four loopback boxes (real `sshd` on "
        "127.0.0.1, prepare: image), a fixed payload that sleeps 5 s. Seconds; median (min, max) of "
        f"{args.repeats}.",
        "",
        make_bench_command(__file__),
        "",
        "| figure | seconds |",
        "|---|---|",
        f"| 4 cells run one per box, one after another (`orchestrate run --host boxN`, N = 0..3) | "
        f"{median_range(baseline)} |",
        f"| `orchestrate sweep`: 16 cells, 4 per box, `--parallel 4` | {median_range(campaign)} |",
        f"| campaign / one-per-box | **{ratio:.2f}x** (target <= 1.3x) |",
        f"| `orchestrate sweep benchmarks/sweeps/dev-box.yaml` (real Keras: {cells.group(1) if cells else '?'} "
        f"cells, accuracy and throughput, on this computer) | {dev_box_s:.1f} |",
        "",
        f"Its HTML report (`orchestrate campaign report dev-box --format html -o …`), opened in headless Chromium: "
        f"{squares} heat-map squares drawn (learning rate × dropout).",
        "",
        "Each cell is a process of its own (`orchestrate run -f CELL.yaml`), so four at once pay four Python "
        "start-ups and four sets of SSH connections on these 2 cores; the campaign's own loop polls the store twice a "
        "second. The dev-box sweep's target is under 5 minutes on two cores.",
    ])
    SECTION.publish(args.output, section)


if __name__ == "__main__":
    main()
