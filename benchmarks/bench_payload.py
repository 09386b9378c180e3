"""`make bench`: the payload's training path against a plain tf.function step, and the pipeline suite's figures.

For the small CNN (32x32x3, batch 64) and MobileNetV2 (32x32x3, batch 32), on this machine:
  * payload: the throughput suite's code path - ``build_model``, synthetic images kept on the device
    (``pipeline.on_device_synthetic``), ``model.compile`` (Adam 1e-3, sparse categorical cross-entropy, no XLA) and
    ``model.fit`` with the StepTimerCallback and StopCheckCallback (``throughput_timing.time_training``);
  * plain: the same model (same seed), optimizer, loss and device batch, trained by a ``tf.function`` step
    (GradientTape + ``optimizer.apply_gradients``) in a Python loop, timed over the same steps.
Both exclude the same warm-up steps per repeat; repeats alternate between the two so load drift hits both.
Then it runs the ``pipeline`` suite with its YAML defaults through the payload CLI.
Nothing here asserts a time; the section records the figures and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import machine_line, median_range, write_section

BEGIN = "<!-- bench:payload:begin -->"
END = "<!-- bench:payload:end -->"
BENCHMARKS_DIR = Path(__file__).resolve().parent
TARGET_RATIO = 0.95


@dataclass(frozen=True)
class Case:
    """One model, input and batch to compare."""

    model: str
    image_size: int
    batch_size: int
    warmup_steps: int
    steps: int


CASES = (Case("small_cnn", 32, 64, 5, 40), Case("mobilenet_v2", 32, 32, 5, 20))


def payload_repeat(case: Case, state: dict[str, Any]) -> float:
    """One repeat of the throughput suite's path: a fit of warm-up + timed steps; returns timed images/sec."""
    from keras_bench.stop import StopRequest
    from keras_bench.throughput_timing import time_training

    timing = time_training(
        state["model"],
        state["x"],
        state["y"],
        batch_size=case.batch_size,
        warmup_steps=case.warmup_steps,
        steps=case.steps,
        repeats=1,
        stop=StopRequest(),
    )
    return timing.median_images_per_sec


def plain_repeat(case: Case, state: dict[str, Any]) -> float:
    """One repeat of the plain loop: warm-up steps, then timed steps; returns timed images/sec."""
    step, images, labels = state["step"], state["images"], state["labels"]
    for _ in range(case.warmup_steps):
        step(images, labels)
    float(step(images, labels))  # one more untimed step, so the timed window starts with nothing in flight
    started = time.perf_counter()
    for _ in range(case.steps - 1):
        step(images, labels)
    float(step(images, labels))  # reading the loss waits for the last step
    return case.batch_size * case.steps / (time.perf_counter() - started)


def build_states(case: Case) -> tuple[dict[str, Any], dict[str, Any]]:
    """Builds both paths on the same seed, images and labels."""
    import keras
    import tensorflow as tf

    from keras_bench.models import build_model
    from keras_bench.pipeline import on_device_synthetic

    shape = (case.image_size, case.image_size, 3)
    keras.utils.set_random_seed(0)
    payload_model = build_model(case.model, shape, 10)
    feed = on_device_synthetic(payload_model, case.batch_size, 10, seed=0)
    feed.model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.001), loss="sparse_categorical_crossentropy", jit_compile=False
    )
    x, y = feed.arrays(case.warmup_steps + case.steps)
    payload = {"model": feed.model, "x": x, "y": y}

    keras.utils.set_random_seed(0)
    model = build_model(case.model, shape, 10)
    optimizer = keras.optimizers.Adam(learning_rate=0.001)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    images = tf.identity(feed.model.get_layer("device_images").images.value)  # the very same device batch
    labels = tf.constant(feed.labels)

    @tf.function(jit_compile=False)  # type: ignore[untyped-decorator]
    def step(batch: Any, targets: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(targets, model(batch, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    return payload, {"step": step, "images": images, "labels": labels}


def compare(case: Case, repeats: int) -> dict[str, list[float]]:
    """Alternates payload and plain repeats; returns images/sec per repeat for each."""
    payload, plain = build_states(case)
    payload_repeat(case, payload)  # trace and warm both before the first measured repeat
    plain_repeat(case, plain)
    figures: dict[str, list[float]] = {"payload": [], "plain": []}
    for _ in range(repeats):
        figures["payload"].append(payload_repeat(case, payload))
        figures["plain"].append(plain_repeat(case, plain))
    return figures


def run_pipeline_suite() -> dict[str, Any]:
    """Runs the pipeline suite with the defaults of benchmarks/suites/pipeline.yaml; returns its document."""
    with tempfile.TemporaryDirectory() as directory:
        suite = Path(directory) / "suite.json"
        suite.write_text(json.dumps({"schema_version": 1, "suite": "pipeline", "run_id": "bench", "params": {}}))
        out = Path(directory) / "results.json"
        env = {**os.environ, "PYTHONPATH": str(BENCHMARKS_DIR), "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run(
            [sys.executable, "-m", "keras_bench", "--suite", str(suite), "--out", str(out)],
            env=env,
            cwd=directory,
            check=True,
            timeout=1800,
        )
        document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return document


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


def paired_ratios(figures: dict[str, list[float]]) -> list[float]:
    """Payload over plain for each pair of adjacent repeats, so load that drifts over the run cancels out."""
    return [a / b for a, b in zip(figures["payload"], figures["plain"], strict=True)]


def render(results: dict[Case, dict[str, list[float]]], repeats: int, pipeline: dict[str, Any]) -> str:
    import keras
    import tensorflow as tf

    lines = [
        BEGIN,
        "## Payload training path against a plain tf.function step (issue 3)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_line()}, no GPU; TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}.",
        "",
        "Command: `make bench` (runs `python benchmarks/bench_payload.py --output docs/performance.md`).",
        "",
        "Training images/sec, median (min, max) of "
        f"{repeats} repeats. Payload: the throughput suite's path (`model.fit` with the step-timing and stop "
        "callbacks, synthetic images kept on the device). Plain: a `tf.function` step (GradientTape, "
        "`apply_gradients`) in a Python loop on the same model, optimizer, loss and device batch. Both exclude the "
        f"same warm-up steps; repeats alternate between them, and the ratio is the median over the pairs of adjacent "
        f"repeats (other load on the machine drifts; a pair sees the same). Target: payload >= {TARGET_RATIO}x plain. "
        "This shared VM's speed drifts by tens of percent over minutes; the min-max of the paired ratios shows "
        "what the pairing leaves, and a whole run of this script can move the median by a few percent.",
        "",
        "| model | input | batch | timed steps | payload images/s | plain images/s | payload / plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, figures in results.items():
        ratios = paired_ratios(figures)
        lines.append(
            f"| {case.model} | {case.image_size}x{case.image_size}x3 | {case.batch_size} | {case.steps} | "
            f"{median_range(figures['payload'], 1)} | {median_range(figures['plain'], 1)} | "
            f"**{statistics.median(ratios):.3f}** (min {min(ratios):.3f}, max {max(ratios):.3f}) |"
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
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    """Measures, prints and writes the section."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/performance.md"))
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results = {}
    import gc

    import keras

    for case in CASES:
        results[case] = compare(case, args.repeats)
        keras.backend.clear_session()  # the next case starts without the last one's graphs and models
        gc.collect()
        payload, plain = statistics.median(results[case]["payload"]), statistics.median(results[case]["plain"])
        ratio = statistics.median(paired_ratios(results[case]))
        print(f"{case.model}: payload {payload:.1f} images/s, plain {plain:.1f} images/s, paired ratio {ratio:.3f}")
    section = render(results, args.repeats, run_pipeline_suite())
    write_section(args.output, section, BEGIN, END)
    print(section)


if __name__ == "__main__":
    main()
