"""`make bench`: the deploy suite on the digits CNN — size, latency and accuracy of every variant, over seeds.

Runs the payload's ``deploy`` suite at its defaults (benchmarks/suites/deploy.yaml) once per seed, as the
orchestrator would (``python -m keras_bench``), and writes one table into docs/performance.md: per variant the
file size against the float32 .tflite file, batch-1 latency p50/p90 and batched images/s on this CPU (medians
over the seeds), and the accuracy change in points (median, min and max over the seeds).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchlib import Section, bench_parser, make_bench_command, measured_on, run_payload

SECTION = Section("deploy")


def run_suite(seed: int, directory: Path) -> dict[str, dict[str, float]]:
    """Runs the deploy suite with one seed and returns {variant: {metric: value}}."""
    document = run_payload("deploy", {"seed": seed}, directory, run_id=f"bench-{seed}", timeout_s=900)
    figures: dict[str, dict[str, float]] = defaultdict(dict)
    for sample in document["samples"]:
        if sample["benchmark"] == "deploy":
            figures[sample["metadata"]["variant"]][sample["metric"]] = float(sample["value"])
    return dict(figures)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_suite(seed, Path(tmp)) for seed in args.seeds]
    wall = (time.perf_counter() - started) / len(runs)
    variants = list(runs[0])

    def values(variant: str, metric: str) -> list[float]:
        return [run[variant][metric] for run in runs if metric in run.get(variant, {})]

    def median(variant: str, metric: str, spec: str) -> str:
        found = values(variant, metric)
        return format(statistics.median(found), spec) if found else ""

    base = statistics.median(values("float32", "model_bytes"))
    base_gzip = statistics.median(values("float32", "model_bytes_gzip"))
    lines = [
        "## Deploy suite: pruning and quantisation of the digits CNN (issue 6)",
        "",
        f"{measured_on()}; TensorFlow backend, LiteRT interpreter on 1 "
        f"thread. The suite's defaults, seeds {', '.join(map(str, args.seeds))} (one run each, {wall:.0f} s a run): "
        "sizes, latencies and images/s are medians over the seeds; Δ accuracy is in percentage points against the "
        "float32 .tflite model of the same seed (median, and min…max over the seeds), on the 359 held-out digits.",
        "",
        make_bench_command(__file__, also="one run by hand: `orchestrate run --provider local --suite deploy`"),
        "",
        "| variant | bytes | × float32 | gzip × float32 | batch-1 p50 ms | p90 ms | img/s (batch 32) | Δ acc pts "
        "(min…max) | sparsity |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for variant in variants:
        deltas = values(variant, "accuracy_delta")
        spread = (f"{statistics.median(deltas):+.2f} ({min(deltas):+.2f}…{max(deltas):+.2f})" if deltas else "")
        size = statistics.median(values(variant, "model_bytes"))
        gzip = statistics.median(values(variant, "model_bytes_gzip"))
        lines.append(
            f"| {variant} | {size:,.0f} | {size / base:.3f} | {gzip / base_gzip:.3f} | "
            f"{median(variant, 'latency_ms_p50', '.4f')} | {median(variant, 'latency_ms_p90', '.4f')} | "
            f"{median(variant, 'images_per_sec', ',.0f')} | {spread} | {median(variant, 'sparsity', '.3f')} |"
        )
    lines += [
        "",
        "Keras variants run as a `tf.function` on TensorFlow's own threads, the .tflite ones in LiteRT on one "
        "thread: compare each within its format. Unstructured sparsity shows in the gzip column only (TFLite stores "
        "dense tensors, and XNNPACK does not skip zeros), so the pruned float32 files are as fast as the dense one.",
    ]
    section = SECTION.text(lines)
    SECTION.publish(args.output, section)


if __name__ == "__main__":
    main()
