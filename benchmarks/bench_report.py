"""`make bench`: report generation time and memory for 100,000 and 1,000,000 samples, written into docs/performance.md.

Fills a fresh store with synthetic runs (each with samples over batch sizes, like a throughput grid), then, each
in a fresh process so that its peak RSS is its own, builds the frames (`api.report_frames_derived`: SQLite →
pandas → derived metrics) three ways: for the summary report (`view="summary"`), with every sample (the samples
view, and every view the CLI builds before it asks for one), and with the builder as it was before issue 11 (kept
as the reference of tests/unit/test_report_frame_equivalence.py), side by side on the same store. The summary
report's process then renders the summary as CSV and the whole report as one HTML file.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, Section, bench_parser, make_bench_command, measured_on
from orchestrator.cost import CostLine
from orchestrator.store import Store

SECTION = Section("report")
SAMPLES_PER_RUN = 1000
# The figures before issue 11, as `make bench` wrote them on 2026-11-28 (one process: 100,000 samples, then
# 1,000,000): samples → frames s, peak RSS MB, store fill s, summary CSV s, HTML report s, HTML MB.
ISSUE_5_DATE = "2026-11-28"
ISSUE_5 = {100_000: (1.21, 279, 0.65, 0.018, 0.17, 5.03), 1_000_000: (8.43, 1536, 7.22, 0.186, 1.85, 50.35)}
# What issue 11 asks of the summary report's frames over 1,000,000 samples.
TARGET_S, TARGET_MB = 3.0, 600
BUILDS = {
    "summary": "summary report (`view=\"summary\"`)",
    "every": "every sample (samples view, or no `view` given)",
    "reference": "every sample, builder before issue 11",
}


def fill(home: Path, samples: int) -> None:
    store = Store(home)
    metrics = ["images_per_sec", "step_time_ms_p50", "step_time_ms_p90", "accuracy"]
    for r in range(samples // SAMPLES_PER_RUN):
        run_id = f"r-bench-{r:05d}"
        store.create_run(run_id, provider="local", suite="throughput", name=None, spec={})
        rows = [
            {"benchmark": "train_throughput", "metric": metrics[i % 4], "value": float(i % 97 + r), "unit": "",
             "metadata": {"model": f"m{i % 5}", "batch_size": 2 ** (4 + i % 6), "precision": "float32",
                          "xla": bool(i % 2), "steps": 50, "repeat": i % 3}}
            for i in range(SAMPLES_PER_RUN)
        ]
        document = {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": rows}
        store.finish_run(run_id, state="succeeded", duration_s=60.0, error=None, log_tail=None,
                         results={"box": document},
                         costs=[CostLine(component="compute", seconds=60.0, billed_seconds=60.0, price_per_hour=3.06,
                                         amount_usd=0.051, rule="aws_linux")])
    store.close()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(build: str, home: Path) -> dict[str, float]:
    """Builds the frames one way in this (fresh) process; the summary build also renders CSV and HTML."""
    import pandas  # noqa: F401  (imported before the clock starts, as a report's process has it by then)

    from orchestrator import api
    from orchestrator.report import frame
    from orchestrator.report.html import render_html
    from orchestrator.report.render import render_text

    if build == "reference":
        sys.path.insert(0, str(REPO / "tests" / "unit"))
        from test_report_frame_equivalence import _reference_samples, _reference_summary

        def reference_frames(store: Store, run_ids: list[str], *, curves_only: bool = False) -> object:
            samples = _reference_samples(store, run_ids)
            return samples, _reference_summary(samples)

        frame.frames = reference_frames  # type: ignore[assignment]
    started = time.perf_counter()
    samples, summary = api.report_frames_derived(home=home, view="summary" if build == "summary" else None)
    figures = {"frames_s": time.perf_counter() - started, "frames_peak_mb": _peak_mb(),
               "summary_rows": float(len(summary)), "sample_rows": float(len(samples))}
    if build == "summary":
        started = time.perf_counter()
        render_text(summary, "csv")
        figures["csv_s"] = time.perf_counter() - started
        started = time.perf_counter()
        html = render_html(samples, summary)
        figures["html_s"] = time.perf_counter() - started
        figures["html_mb"] = len(html.encode()) / 1e6
        figures["peak_mb"] = _peak_mb()
    return figures


def measure(samples: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        fill(home, samples)
        results: dict[str, dict[str, float]] = {"fill": {"s": time.perf_counter() - started}}
        for build in BUILDS:
            done = subprocess.run([sys.executable, __file__, "--child", build, str(home)], check=True,
                                  capture_output=True, text=True, cwd=REPO)
            results[build] = json.loads(done.stdout.splitlines()[-1])
        return results


def section(measured: dict[int, dict[str, dict[str, float]]]) -> str:
    lines = [
        "## Report generation (issues 5 and 11)",
        "",
        f"{measured_on()}. Each build in a fresh process (its own peak "
        "RSS; pandas imported before the clock starts). Seconds.",
        "",
        make_bench_command(__file__),
        "",
        f"Target (issue 11): the summary report's frames over 1,000,000 samples in ≤ {TARGET_S:.0f} s and "
        f"≤ {TARGET_MB} MB peak.",
        "",
        "| samples | frames built for | frames: SQLite → pandas → derived metrics | peak RSS MB | samples frame rows | "
        "summary rows |",
        "|---|---|---|---|---|---|",
    ]
    for samples, results in measured.items():
        if samples in ISSUE_5:
            seconds, peak = ISSUE_5[samples][:2]
            lines.append(f"| {samples:,} | every sample, issue 5's figure ({ISSUE_5_DATE}, one process) | "
                         f"{seconds:.2f} | {peak:,} | {samples:,} | {results['summary']['summary_rows']:,.0f} |")
        for build in ("reference", "every", "summary"):
            row = results[build]
            strong = "**" if build == "summary" else ""
            lines.append(f"| {samples:,} | {BUILDS[build]} | {strong}{row['frames_s']:.2f}{strong} | "
                         f"{strong}{row['frames_peak_mb']:,.0f}{strong} | {row['sample_rows']:,.0f} | "
                         f"{row['summary_rows']:,.0f} |")
    lines += [
        "",
        "The summary report after its frames (same process):",
        "",
        "| samples | measured | store fill (setup) | summary CSV | HTML report | HTML size MB | "
        "peak RSS MB with the HTML |",
        "|---|---|---|---|---|---|---|",
    ]
    for samples, results in measured.items():
        if samples in ISSUE_5:
            _, peak, fill_s, csv_s, html_s, html_mb = ISSUE_5[samples]
            lines.append(f"| {samples:,} | issue 5's figure ({ISSUE_5_DATE}, every sample) | {fill_s:.2f} | "
                         f"{csv_s:.3f} | {html_s:.2f} | {html_mb:.2f} | {peak:,} |")
        row = results["summary"]
        lines.append(f"| {samples:,} | {time.strftime('%Y-%m-%d')} | {results['fill']['s']:.2f} | "
                     f"{row['csv_s']:.3f} | {row['html_s']:.2f} | {row['html_mb']:.2f} | {row['peak_mb']:,.0f} |")
    lines += [
        "",
        f"Each run has {SAMPLES_PER_RUN:,} samples over 5 models × 6 batch sizes × XLA on/off. The frames read "
        "the store in bulk: per run one row of its samples' text (host, benchmark, metric, unit, metadata), split "
        "and coded in Arrow, and one row per value; the metadata is parsed once per distinct text, and the summary "
        "takes one median per run and recipe group instead of pivoting a frame of every sample. The summary "
        "view's samples frame holds only the per-epoch curve points its HTML charts read; the other views still "
        "get every sample, every metadata key a column.",
    ]
    return SECTION.text(lines)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", nargs=2, metavar=("BUILD", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    text = section({size: measure(size) for size in args.sizes})
    SECTION.publish(args.output, text)


if __name__ == "__main__":
    main()
