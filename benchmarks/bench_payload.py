"""`make bench`: the payload's training figures against an independent yardstick, their spread, and the pipeline suite.

1. Payload against yardstick, per Keras backend (TensorFlow, and JAX where it is installed), each backend in a
   process of its own: for the small CNN (32x32x3, batch 64) and MobileNetV2 (32x32x3, batch 32),
   * payload: the throughput suite's functions - ``build_model``, synthetic images kept on the device
     (``data.pipeline.on_device_synthetic``), ``model.compile`` (Adam 1e-3, sparse categorical cross-entropy,
     ``steps_per_execution`` as the suite's default, XLA as the backend's plain compiled step: off on TensorFlow,
     ``jax.jit`` on JAX) and ``timing.throughput.time_training``; its figure is the median repeat, as recorded
     (inference cases: ``time_inference``, chunked ``model.predict`` passes, as the suite records them);
   * yardstick: ``benchmarks/yardstick.py``, which imports nothing of the payload (its own model definition,
     data and timing: a ``tf.function`` GradientTape step, or a jitted JAX step, synced once per window; for
     inference a ``tf.function`` / jitted forward pass).
   A pair is one payload measurement (``repeats`` repeats) and one yardstick measurement (as many windows of
   the same steps), in alternating order (ABBA), so load that drifts over the run hits both; the ratio is the
   median over the pairs, with its min and max.
2. Run-to-run spread: the smoke suite and a small throughput suite, each run ``--runs`` times through the
   payload CLI on this machine: every run's figure, the spread across runs and within each run (its repeats).
3. The ``pipeline`` suite with its YAML defaults.
Nothing here asserts a time; the section records the figures and the ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchlib import BENCHMARKS, Section, bench_parser, make_bench_command, measured_on, median_range, run_payload

SECTION = Section("payload")
TARGET_RATIO = 0.97
BACKENDS = ("tensorflow", "jax")


@dataclass(frozen=True)
class Case:
    """One model, input and batch to compare, and the steps of one measurement."""

    model: str
    image_size: int
    batch_size: int
    warmup_steps: int
    steps: int
    repeats: int  # repeats per measurement (payload epochs; yardstick windows)
    chunk: int | None = None  # the payload's steps_per_execution; None: the throughput suite's default
    precision: str = "float32"  # a Keras dtype policy
    classes: int = 10
    mode: str = "train"  # "train", or "inference": the payload's chunked predict against a plain forward loop


# JAX on this CPU is 3-5x slower than TensorFlow for these convolutions, so its measurements are shorter.
CASES = {
    "tensorflow": (
        Case("small_cnn", 32, 64, 10, 40, 3),
        Case("mobilenet_v2", 32, 32, 10, 30, 3),
        Case("mobilenet_v2", 32, 32, 10, 30, 3, chunk=1),  # the timed path before issue 17: a sync every step
        Case("mobilenet_v2", 32, 32, 10, 30, 3, mode="inference"),
    ),
    "jax": (Case("small_cnn", 32, 64, 10, 20, 3), Case("mobilenet_v2", 32, 32, 10, 10, 3),
            Case("small_cnn", 32, 64, 10, 20, 3, mode="inference")),
}
# On a lent GPU machine (benchmarks/device/gpu_yardstick.sh, JAX there): ResNet-50 at 224x224, 1000 classes.
GPU_CASES = {
    "jax": tuple(Case("resnet50", 224, batch, 10, 20, 2, precision=precision, classes=1000)
                 for batch in (64, 256) for precision in ("float32", "mixed_bfloat16")),
}


def payload_state(case: Case, backend: str) -> dict[str, Any]:
    """Builds the payload's model and data as the throughput suite does, compiled with its default chunk."""
    import keras

    from keras_bench.data.pipeline import on_device_synthetic
    from keras_bench.models.backends import compile_options, precision_policy
    from keras_bench.models.builders import build_model
    from keras_bench.suites.throughput import THROUGHPUT_PARAMS
    from keras_bench.timing.throughput import chunked_steps

    default_chunk = int(next(p.default for p in THROUGHPUT_PARAMS if p.name == "steps_per_execution"))
    chunk = min(case.chunk or default_chunk, case.steps)
    keras.utils.set_random_seed(0)
    with precision_policy(case.precision):
        model = build_model(case.model, (case.image_size, case.image_size, 3), case.classes)
        feed = on_device_synthetic(model, case.batch_size, case.classes, seed=0)
        feed.model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
                           loss="sparse_categorical_crossentropy", steps_per_execution=chunk,
                           **compile_options(backend == "jax"))
    x, y = feed.arrays(sum(chunked_steps(case.warmup_steps, case.steps, chunk)))
    return {"model": feed.model, "x": x, "y": y, "chunk": chunk}


def payload_measure(case: Case, state: dict[str, Any]) -> float:
    """One payload measurement: a fit of ``repeats`` epochs (or ``repeats`` chunked predict passes); returns the
    median repeat's images/sec."""
    from keras_bench.stop import StopRequest
    from keras_bench.timing.throughput import time_inference, time_training

    if case.mode == "inference":
        timing = time_inference(state["model"], state["x"], batch_size=case.batch_size,
                                warmup_steps=case.warmup_steps, steps=case.steps, repeats=case.repeats,
                                stop=StopRequest())
    else:
        timing = time_training(state["model"], state["x"], state["y"], batch_size=case.batch_size,
                               warmup_steps=case.warmup_steps, steps=case.steps, repeats=case.repeats,
                               stop=StopRequest())
    return timing.median_images_per_sec


def yardstick_measure(case: Case, loop: Any) -> float:
    """One yardstick measurement: ``repeats`` windows of warm-up + timed steps; returns the median window."""
    return float(statistics.median(loop.images_per_sec(case.warmup_steps, case.steps, case.mode)
                                   for _ in range(case.repeats)))


def compare(case: Case, backend: str, pairs: int) -> dict[str, Any]:
    """Alternates payload and yardstick measurements (ABBA); returns both lists of images/sec."""
    import gc

    import keras

    from yardstick import Loop, Workload

    payload = payload_state(case, backend)
    loop = Loop(Workload(case.model, case.image_size, case.classes, case.batch_size, case.precision))
    payload_measure(case, payload)  # trace, compile and warm both before the first measured pair
    yardstick_measure(case, loop)
    figures: dict[str, Any] = {"case": asdict(case), "backend": backend, "chunk": payload["chunk"], "payload": [],
                               "yardstick": []}
    for pair in range(pairs):
        order = ("payload", "yardstick") if pair % 2 == 0 else ("yardstick", "payload")
        for side in order:
            value = payload_measure(case, payload) if side == "payload" else yardstick_measure(case, loop)
            figures[side].append(value)
    del payload, loop
    keras.backend.clear_session()
    gc.collect()
    return figures


def worker(backend: str, pairs: int, cases: str = "cpu") -> None:
    """Runs in a process of its own (KERAS_BACKEND is fixed at import): prints one JSON line per case, and on
    stderr one readable line (a GPU session reads those)."""
    import keras

    for case in (GPU_CASES if cases == "gpu" else CASES)[backend]:
        figures = compare(case, backend, pairs)
        figures["versions"] = {"keras": keras.__version__, backend: _backend_version(backend)}
        print("RESULT " + json.dumps(figures), flush=True)
        ratios = paired_ratios(figures)
        print(f"{backend} {case.model} {case.image_size}px batch {case.batch_size} {case.precision}: payload "
              f"{statistics.median(figures['payload']):.1f}, yardstick {statistics.median(figures['yardstick']):.1f}"
              f" images/s, ratio {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})",
              file=sys.stderr, flush=True)


def _backend_version(backend: str) -> str:
    module = __import__(backend)
    return str(getattr(module, "__version__", "?"))


def run_worker(backend: str, pairs: int) -> list[dict[str, Any]]:
    """Runs ``worker`` for one backend in a subprocess; returns its cases' figures (none when it cannot run)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(BENCHMARKS), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if importlib.util.find_spec(backend) is None:
        print(f"{backend}: not installed, no yardstick comparison")
        return []
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", backend, "--pairs", str(pairs)],
        env=env, capture_output=True, text=True, timeout=3600, check=False,
    )
    results = [json.loads(line[len("RESULT "):]) for line in completed.stdout.splitlines()
               if line.startswith("RESULT ")]
    if completed.returncode != 0:
        print(f"{backend}: worker exit {completed.returncode}\n{completed.stderr[-3000:]}")
    return results


def run_suite(suite_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Runs one suite through the payload CLI (TensorFlow backend); returns its results document."""
    with tempfile.TemporaryDirectory() as directory:
        return run_payload(suite_name, params, Path(directory))


# The run-to-run spread: each suite run this many times, one after another (params as given, else the YAML's).
SPREAD_SUITES = {
    "smoke": {},
    "throughput": {"models": ["mobilenet_v2"], "batch_sizes": [32], "precisions": ["float32"], "xla": [False],
                   "image_size": 32, "num_classes": 10, "warmup_steps": 10, "steps": 30, "repeats": 3,
                   "inference": False},
}


def _figure(document: dict[str, Any], metric: str) -> float | None:
    return next((s["value"] for s in document["samples"]
                 if (s["benchmark"], s["metric"]) == ("train_throughput", metric)), None)


def run_to_run(runs: int) -> dict[str, list[dict[str, float]]]:
    """Runs each of SPREAD_SUITES ``runs`` times; returns per suite every run's figure and within-run spread."""
    figures: dict[str, list[dict[str, float]]] = {}
    for suite, params in SPREAD_SUITES.items():
        for _ in range(runs):
            document = run_suite(suite, params)
            figures.setdefault(suite, []).append({
                "images_per_sec": _figure(document, "images_per_sec") or 0.0,
                "min": _figure(document, "images_per_sec_min") or 0.0,
                "max": _figure(document, "images_per_sec_max") or 0.0,
                "cv": _figure(document, "images_per_sec_cv") or 0.0,
            })
        print(f"{suite}: " + ", ".join(f"{run['images_per_sec']:.0f}" for run in figures[suite]) + " images/s")
    return figures


def _pipeline_rows(document: dict[str, Any]) -> list[str]:
    by_feed: dict[str, dict[str, float]] = {}
    for sample in document["samples"]:
        feed = sample["metadata"].get("pipeline")
        if sample["benchmark"] == "train_throughput" and feed:
            by_feed.setdefault(feed, {})[sample["metric"]] = sample["value"]
    return [
        f"| {feed} | {m.get('images_per_sec', 0):.0f} | {m.get('step_time_ms_p50', 0):.2f} | "
        f"{m.get('step_time_ms_p90', 0):.2f} | {m.get('step_time_ms_stdev', 0):.2f} |"
        for feed, m in by_feed.items()
    ]


def paired_ratios(figures: dict[str, Any]) -> list[float]:
    """Payload over yardstick for each pair, so load that drifts over the run cancels out."""
    return [a / b for a, b in zip(figures["payload"], figures["yardstick"], strict=True)]


def cv(values: list[float]) -> float:
    """Sample standard deviation over the mean."""
    return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0


def render(comparisons: list[dict[str, Any]], pairs: int, spread: dict[str, list[dict[str, float]]], runs: int,
           pipeline: dict[str, Any]) -> str:
    versions = ", ".join(sorted({f"{k} {v}" for c in comparisons for k, v in c["versions"].items()}))
    lines = [
        "## The payload's training and inference figures against an independent yardstick (issues 3, 17 and 23)",
        "",
        f"{measured_on()}, no GPU; {versions}.",
        "",
        make_bench_command(__file__),
        "",
        "Payload: the throughput suite's functions (`build_model`, synthetic images kept on the device, "
        "`model.compile` with the suite's default `steps_per_execution`, `time_training`; the figure is the median "
        "repeat, as the suite records it; inference rows: `time_inference`, chunked `model.predict` passes, one "
        "host sync per chunk). Yardstick: `benchmarks/yardstick.py`, written apart from the payload "
        "(it imports none of its model, data or timing code): a `tf.function` GradientTape step on TensorFlow, a "
        "`jax.jit` step over `stateless_call` on JAX (inference: a `tf.function` / jitted forward pass), warm-up "
        "untimed, one host sync per timed window. Same "
        "architecture, input and batch, on the same machine; each backend in a process of its own. A pair is one "
        "payload measurement and one yardstick measurement of the same steps and repeats, in alternating order "
        f"(ABBA); the ratio is the median over {pairs} pairs (min-max beside it). Target: >= {TARGET_RATIO}x. "
        "Images/s: median (min, max) over the pairs.",
        "",
        "| backend | model | timed | input | batch | steps x repeats | chunk | payload images/s | yardstick images/s | "
        "payload / yardstick |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for figures in comparisons:
        case = Case(**figures["case"])
        ratios = paired_ratios(figures)
        verdict = "" if statistics.median(ratios) >= TARGET_RATIO else " (below target)"
        lines.append(
            f"| {figures['backend']} | {case.model} | {case.mode} | {case.image_size}x{case.image_size}x3 | "
            f"{case.batch_size} | "
            f"{case.steps} x {case.repeats} | {figures['chunk']} | {median_range(figures['payload'], 1)} | "
            f"{median_range(figures['yardstick'], 1)} | **{statistics.median(ratios):.3f}** "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}){verdict} |"
        )
    lines += [
        "",
        "### Run-to-run spread on this machine",
        "",
        f"Each suite run {runs} times in a row through the payload CLI (TensorFlow): `smoke` with its defaults "
        "(its figure is the median epoch, 10 epochs), and `throughput` with MobileNetV2 32x32x3, batch 32, float32, "
        "10 warm-up + 30 timed steps x 3 repeats. Across runs: the runs' figures and their coefficient of "
        "variation; within runs: each run's own repeats' coefficient of variation (what a report flags above 5%).",
        "",
        "| suite | runs' train images/s | across runs: median (min, max) | across-run cv | within-run cv: "
        "median (min, max) |",
        "|---|---|---|---|---|",
    ]
    for suite, runs_figures in spread.items():
        values = [run["images_per_sec"] for run in runs_figures]
        within = [100 * run["cv"] for run in runs_figures]
        lines.append(
            f"| {suite} | {', '.join(f'{v:.0f}' for v in values)} | {median_range(values, 1)} | "
            f"{100 * cv(values):.1f}% | {median_range(within, 1)} % |"
        )
    params = pipeline["params"]
    lines += [
        "",
        "### Pipeline suite",
        "",
        f"`pipeline` suite with its defaults ({params['model']}, {params['image_size']}x{params['image_size']}x3, "
        f"batch {params['batch_size']}, {params['examples']} examples, {params['shards']} {params['compression']} "
        f"shards, {params['warmup_steps']} warm-up + {params['steps']} timed steps x {params['repeats']} repeats). "
        "Training images/sec is the median repeat; step times in ms over all timed steps.",
        "",
        "| feed | images/s | step p50 | step p90 | step stdev |",
        "|---|---|---|---|---|",
        *_pipeline_rows(pipeline),
    ]
    return SECTION.text(lines)


def main() -> None:
    """Measures, prints and writes the section."""
    parser = bench_parser(__doc__)
    parser.add_argument("--pairs", type=int, default=6, help="alternating payload/yardstick pairs per case (>= 5)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each suite for the run-to-run spread")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated Keras backends")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cases", choices=("cpu", "gpu"), default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.worker:
        worker(args.worker, args.pairs, args.cases)
        return
    comparisons = []
    for backend in args.backends.split(","):
        for figures in run_worker(backend, args.pairs):
            comparisons.append(figures)
            ratio = statistics.median(paired_ratios(figures))
            print(f"{backend} {figures['case']['model']}: payload {statistics.median(figures['payload']):.1f}, "
                  f"yardstick {statistics.median(figures['yardstick']):.1f} images/s, paired ratio {ratio:.3f}")
    spread = run_to_run(args.runs)
    section = render(comparisons, args.pairs, spread, args.runs, run_suite("pipeline", {}))
    SECTION.publish(args.output, section)


if __name__ == "__main__":
    main()
