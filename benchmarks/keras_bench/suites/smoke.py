"""Suite ``smoke``: a small CNN on scikit-learn's bundled 8x8 digits.

Measures training and inference images/sec and test accuracy in well under a minute on two CPU cores. Uses
only ``keras.*`` APIs, so it runs on any Keras backend.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from keras_bench.data.datasets import load_digits_split
from keras_bench.errors import ParamError
from keras_bench.models.backends import backend_name, gpu_count, lean_imports
from keras_bench.models.builders import MODEL_BUILDERS
from keras_bench.params import (
    ParamValue,
    choice,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)
from keras_bench.progress import say
from keras_bench.recorder import RunRecorder
from keras_bench.results import MetadataValue
from keras_bench.suites.base import Suite
from keras_bench.timing.inference import time_batched_passes
from keras_bench.timing.rows import add_spread, record_training
from keras_bench.timing.spread import percentile
from keras_bench.timing.steps import StepTimer
from keras_bench.timing.throughput import summarize_repeats, without_first_short_span

TEST_FRACTION = 0.2

# Keep names and defaults identical to benchmarks/suites/smoke.yaml.
SMOKE_PARAMS = (
    choice("model", "small_cnn", sorted(MODEL_BUILDERS)),
    positive_int("epochs", 10),
    positive_int("batch_size", 32),
    positive_float("learning_rate", 0.001),
    fraction("dropout", 0.25),
    non_negative_int("warmup_steps", 5),
    positive_int("steps_per_execution", 5),
    positive_int("inference_repeats", 3),
    non_negative_int("seed", 0),
)


@dataclass(frozen=True)
class SmokeParams:
    """The smoke suite's params, typed."""

    model: str
    epochs: int
    batch_size: int
    learning_rate: float
    dropout: float
    warmup_steps: int  # leading training steps excluded from throughput (tracing, compilation)
    steps_per_execution: int  # steps per call of the compiled training loop (one timer span, one host sync)
    inference_repeats: int  # timed passes over the test set after one warm-up pass
    seed: int

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> SmokeParams:
        """Types the effective params that ``resolve_params`` produced from ``SMOKE_PARAMS``."""
        return cls(
            model=str(params["model"]),
            epochs=int(params["epochs"]),
            batch_size=int(params["batch_size"]),
            learning_rate=float(params["learning_rate"]),
            dropout=float(params["dropout"]),
            warmup_steps=int(params["warmup_steps"]),
            steps_per_execution=int(params["steps_per_execution"]),
            inference_repeats=int(params["inference_repeats"]),
            seed=int(params["seed"]),
        )


def _record_train_throughput(
    recorder: RunRecorder, timer: StepTimer, p: SmokeParams, metadata: dict[str, MetadataValue]
) -> None:
    spans = without_first_short_span(timer.steps, p.batch_size)  # a retrace for the short last batch's shape
    timing = summarize_repeats(spans, p.warmup_steps, p.batch_size, p.steps_per_execution, warmup_each_repeat=False)
    if record_training(recorder, timing, metadata) is None:
        say("train throughput not recorded: no timed steps after warm-up")
        return
    step_ms = timing.step_ms
    spread = timing.spread
    say(
        f"train {spread.median:.0f} images/s (median of {len(spread.values)} epochs, "
        f"{spread.low:.0f}-{spread.high:.0f}; warm-up {timing.warmup_steps} steps excluded)"
        + (f", step p50 {percentile(step_ms, 50):.2f} ms" if step_ms else "")
    )


def run_smoke(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    """Trains the small CNN on digits, then evaluates it and times inference.

    Args:
        params: Effective params from ``SMOKE_PARAMS``.
        recorder: Receives samples and phase timings.

    Raises:
        ParamError: When ``warmup_steps`` leaves no training step to time.
    """
    p = SmokeParams.from_params(params)

    with recorder.phase("import", "import"), lean_imports():
        import keras  # timed: the run's first Keras import

        from keras_bench.timing.callbacks import ProgressCallback, StepTimerCallback, StopCheckCallback
    import_s = recorder.seconds["import"]
    say(f"imported keras {keras.__version__} (backend {keras.backend.backend()}) in {import_s:.1f}s")

    with recorder.phase("data", "data"):
        split = load_digits_split(seed=p.seed, test_fraction=TEST_FRACTION)
    train_count, test_count = len(split.x_train), len(split.x_test)
    say(f"data: digits {train_count} train / {test_count} test images in {recorder.seconds['data']:.1f}s")

    steps_per_epoch = -(-train_count // p.batch_size)
    if p.warmup_steps >= p.epochs * steps_per_epoch:
        raise ParamError(
            f"param 'warmup_steps': expected fewer than the {p.epochs * steps_per_epoch} training steps "
            f"({p.epochs} epochs x {steps_per_epoch} steps), received {p.warmup_steps}"
        )

    gpus_used = min(1, gpu_count(backend_name()))  # fit without a distribution uses one
    metadata: dict[str, MetadataValue] = {
        "model": p.model,
        "batch_size": p.batch_size,
        "precision": "float32",
        "data": "digits",
        "gpus": gpus_used,
        "backend": backend_name(),  # what a comparison with another framework's figure names
    }

    with recorder.phase("build", "compute"):
        keras.utils.set_random_seed(p.seed)
        model = MODEL_BUILDERS[p.model](split.image_shape, split.num_classes, p.dropout)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=p.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=p.steps_per_execution,
        )

    timer = StepTimer()
    with recorder.phase("train", "compute"):
        fit_started = time.perf_counter()
        model.fit(
            split.x_train,
            split.y_train,
            batch_size=p.batch_size,
            epochs=p.epochs,
            verbose=0,
            callbacks=[
                StepTimerCallback(timer, train_count, p.batch_size),
                ProgressCallback(p.epochs),
                StopCheckCallback(recorder.stop),
            ],
        )
        fit_s = time.perf_counter() - fit_started
    recorder.add("train", "epochs", p.epochs, "epochs", metadata)
    recorder.add("train", "seconds", fit_s, "s", metadata)
    _record_train_throughput(recorder, timer, p, metadata)

    with recorder.phase("evaluate", "compute"):
        scores = model.evaluate(
            split.x_test,
            split.y_test,
            batch_size=p.batch_size,
            verbose=0,
            return_dict=True,
            callbacks=[StopCheckCallback(recorder.stop)],
        )
    test_metadata: dict[str, MetadataValue] = {
        **metadata,
        "split": "test",
        "examples": test_count,
        "loss_function": "sparse_categorical_crossentropy",
    }
    recorder.add("train", "accuracy", float(scores["accuracy"]), "fraction", test_metadata)
    recorder.add("train", "loss", float(scores["loss"]), "", test_metadata)
    say(f"test accuracy={float(scores['accuracy']):.4f} loss={float(scores['loss']):.4f}")

    with recorder.phase("inference", "compute"):
        inference = time_batched_passes(
            model.predict_on_batch,
            split.x_test,
            p.batch_size,
            p.inference_repeats,
            before_batch=recorder.stop.check,
        )
    inference_metadata = {**metadata, "repeat": p.inference_repeats, "images": test_count}
    add_spread(recorder, "inference_throughput", inference.spread, inference_metadata)
    if inference.full_batch_ms:
        recorder.add(
            "inference_throughput",
            "step_time_ms_p50",
            percentile(inference.full_batch_ms, 50),
            "ms",
            inference_metadata,
        )
    say(f"inference {inference.median_images_per_sec:.0f} images/s (median of {p.inference_repeats} passes)")


SMOKE = Suite(
    name="smoke",
    description="A small CNN trained on scikit-learn's bundled 8x8 digits (no download) - "
    "training and inference images/sec and test accuracy.",
    params=SMOKE_PARAMS,
    run=run_smoke,
)
