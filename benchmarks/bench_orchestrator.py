"""`make bench`: the orchestrator's own costs, written into docs/performance.md.

Measures (on this machine, with the commands shown in the document):
  * the wall time of `orchestrate --help` (start-up cost of the CLI);
  * the orchestrator's overhead on a local smoke run: the run's wall time minus the payload's own compute
    time (`timings.compute_s` in the results document), and minus the payload process's whole life
    (`timings.total_s`, which adds Python start, Keras import and data loading).

Each figure is repeated; the median and the range are reported. Nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

from benchlib import ORCHESTRATE, Section, bench_parser, make_bench_command, measured_on, median_range, timed_run

SECTION = Section("orchestrator")


def _timed(argv: list[str], env: dict[str, str]) -> float:
    return timed_run(argv, env, timeout_s=600)


def bench_help(repeats: int) -> list[float]:
    env = dict(os.environ)
    _timed([ORCHESTRATE, "--help"], env)  # warm the file cache
    return [_timed([ORCHESTRATE, "--help"], env) for _ in range(repeats)]


def bench_run_overhead(repeats: int) -> list[dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ORCHESTRATE_HOME": home}
        for _ in range(repeats):
            wall = _timed([ORCHESTRATE, "run", "--provider", "local", "--suite", "smoke", "--quiet"], env)
            with sqlite3.connect(Path(home) / "state.db") as db:
                run_id, duration, timings = db.execute(
                    "SELECT id, duration_s, timings_json FROM runs ORDER BY created_at DESC LIMIT 1"
                ).fetchone()
                steps = dict(db.execute(
                    "SELECT step, (julianday(ended_at) - julianday(started_at)) * 86400 FROM events "
                    "WHERE run_id = ?", (run_id,)
                ).fetchall())
            timings = json.loads(timings)
            rows.append({
                "execute_s": steps["execute"],
                "own_steps_s": sum(seconds for step, seconds in steps.items() if step != "execute"),
                "wall_s": wall,
                "recorded_duration_s": duration,
                "payload_total_s": timings["total_s"],
                "payload_compute_s": timings["compute_s"],
                "payload_import_s": timings["import_s"],
            })
    return rows


def render(help_s: list[float], runs: list[dict[str, float]]) -> str:
    def col(key: str) -> list[float]:
        return [row[key] for row in runs]

    overhead_compute = [r["wall_s"] - r["payload_compute_s"] for r in runs]
    overhead_payload = [r["wall_s"] - r["payload_total_s"] for r in runs]
    return SECTION.text([
        "## Orchestrator overhead (issue 2)",
        "",
        f"{measured_on()}, "
        "no GPU. Seconds; median (min, max).",
        "",
        make_bench_command(__file__),
        "",
        "| figure | how it is measured | seconds |",
        "|---|---|---|",
        f"| `orchestrate --help` wall time | `orchestrate --help`, {len(help_s)} runs after one warm-up | "
        f"{median_range(help_s)} |",
        f"| local smoke run, wall time | `orchestrate run --provider local --suite smoke --quiet`, {len(runs)} runs | "
        f"{median_range(col('wall_s'))} |",
        f"| payload compute (`timings.compute_s`) | model build + fit + evaluate + inference timing | "
        f"{median_range(col('payload_compute_s'))} |",
        f"| payload process life (`timings.total_s`) | adds Keras/TF import "
        f"({median_range(col('payload_import_s'))}) and data | "
        f"{median_range(col('payload_total_s'))} |",
        f"| **overhead = wall − payload compute** | everything that is not the payload's own compute | "
        f"**{median_range(overhead_compute)}** |",
        f"| overhead = wall − payload process life | all that is not the payload's timed life | "
        f"{median_range(overhead_payload)} |",
        f"| of which: orchestrator steps | provision, connect, prepare, push, collect, teardown, price, record "
        f"(event durations) | {median_range(col('own_steps_s'))} |",
        f"| of which: execute step − payload life | Python start and exit around the payload's timer (the payload "
        f"skips TensorFlow's ~1 s teardown once its results are written), and the last log poll (0.5 s interval) | "
        f"{median_range([r['execute_s'] - r['payload_total_s'] for r in runs])} |",
        f"| of which: CLI start, plan, store open | wall − the run's recorded duration | "
        f"{median_range([r['wall_s'] - r['recorded_duration_s'] for r in runs])} |",
        "",
        "Most of the overhead against compute is the payload importing TensorFlow/Keras, which any run pays; "
        "the orchestrator's own steps are the rows above marked 'of which'.",
    ])


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--help-repeats", type=int, default=10)
    parser.add_argument("--run-repeats", type=int, default=3)
    args = parser.parse_args()
    help_s = bench_help(args.help_repeats)
    runs = bench_run_overhead(args.run_repeats)
    section = render(help_s, runs)
    SECTION.publish(args.output, section)


if __name__ == "__main__":
    main()
