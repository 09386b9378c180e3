"""`make bench`: report generation time for 100,000 and 1,000,000 samples, written into docs/performance.md.

Fills a fresh store with synthetic runs (each with samples over batch sizes, like a throughput grid), then
times, in this process: building the frames (`api.report_frames_derived`: SQLite → pandas → derived metrics),
and rendering the summary as CSV and the whole report as one HTML file. Peak RSS is reported too.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import machine_line, write_section  # noqa: E402
from orchestrator import api  # noqa: E402
from orchestrator.report.html import render_html  # noqa: E402
from orchestrator.report.render import render_text  # noqa: E402
from orchestrator.store import Store  # noqa: E402

BEGIN = "<!-- bench:report:begin -->"
END = "<!-- bench:report:end -->"
SAMPLES_PER_RUN = 1000


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
                         costs=[{"component": "compute", "seconds": 60.0, "billed_seconds": 60.0,
                                 "price_per_hour": 3.06, "amount_usd": 0.051, "rule": "aws_linux"}])
    store.close()


def measure(samples: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        fill(home, samples)
        filled = time.perf_counter()
        sample_frame, summary = api.report_frames_derived(home=home)
        framed = time.perf_counter()
        render_text(summary, "csv")
        csv_done = time.perf_counter()
        html = render_html(sample_frame, summary)
        html_done = time.perf_counter()
        return {
            "samples": float(len(sample_frame)), "summary_rows": float(len(summary)), "fill_s": filled - started,
            "frames_s": framed - filled, "csv_s": csv_done - framed, "html_s": html_done - csv_done,
            "html_mb": len(html.encode()) / 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/performance.md"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    rows = [measure(size) for size in args.sizes]
    lines = [
        BEGIN,
        "## Report generation (issue 5)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_line()}. One run each, in one process (peak RSS grows "
        "across sizes). Seconds.",
        "",
        "Command: `make bench` (runs `python benchmarks/bench_report.py --output docs/performance.md`).",
        "",
        "| samples | summary rows | store fill (setup) | frames: SQLite → pandas → derived metrics | summary CSV | "
        "HTML report | HTML size MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['samples']:,.0f} | {row['summary_rows']:,.0f} | {row['fill_s']:.2f} | **{row['frames_s']:.2f}** | "
            f"{row['csv_s']:.3f} | **{row['html_s']:.2f}** | {row['html_mb']:.2f} | {row['peak_rss_mb']:,.0f} |"
        )
    lines += ["", f"Each run has {SAMPLES_PER_RUN:,} samples over 5 models × 6 batch sizes × XLA on/off.", END]
    section = "\n".join(lines)
    write_section(args.output, section, BEGIN, END)
    print(section)


if __name__ == "__main__":
    main()
