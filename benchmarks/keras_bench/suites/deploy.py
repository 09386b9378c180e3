"""Suite ``deploy``: what pruning and quantisation gain in size and speed, and cost in accuracy, on one model.

Trains the model briefly (the float32 baseline), then makes deployable variants of it: TFLite files from
TensorFlow's converter (float32, dynamic-range, float16, full-integer int8) run in the LiteRT interpreter,
Keras 3's own ``model.quantize("int8")`` run in Keras, magnitude-pruned copies fine-tuned with their masks
(``deploy_keras.MagnitudePruning``), and pruned copies converted to int8. Every variant gets the same rows:
file bytes and gzip bytes, batch-1 latency p50/p90, batched images/sec, held-out accuracy and its change from
the float32 baseline. Needs KERAS_BACKEND=tensorflow (the TFLite converter) and ``ai-edge-litert``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_bench.backends import lean_imports
from keras_bench.checkpoint import run_directory
from keras_bench.datasets import ImageSplit
from keras_bench.deploy_measure import (
    GZIP_LEVEL,
    FileSize,
    Latency,
    Predict,
    Throughput,
    accuracy,
    file_size,
    time_latency,
    time_throughput,
)
from keras_bench.errors import ParamError
from keras_bench.models import build_model, check_model
from keras_bench.params import (
    ParamList,
    ParamSpec,
    ParamValue,
    choice,
    flag,
    list_of,
    non_negative_int,
    positive_float,
    positive_int,
    text,
)
from keras_bench.progress import say
from keras_bench.recorder import RunRecorder, guarded
from keras_bench.results import MetadataValue
from keras_bench.suites.base import Suite
from keras_bench.suites.training_recipe import DataChoice, base_metadata, data_params, image_shape
from keras_bench.throughput_timing import add_spread

if TYPE_CHECKING:
    from keras_bench.deploy_keras import PruningOutcome  # imports Keras: only for the type checker

SUITE_NAME = "deploy"
BENCHMARK = "deploy"
QUANTIZATIONS = ("dynamic_range", "float16", "int8", "keras_int8")
DROPOUT = 0.25  # the smoke suite's small CNN; only used while training and fine-tuning
MODELS_FOLDER = "deploy-models"  # in the run directory, when keep_models is true
TFLITE, KERAS = "tflite", "keras"
BASELINE = "float32"
KERAS_BASELINE = "keras_float32"  # the float32 model as a .keras file: the reference of keras_int8


class VariantSkipped(Exception):
    """A variant that does not apply to this model (e.g. Keras int8 with no quantisable layer)."""


def _sparsity_item(name: str, default: float) -> ParamSpec:
    def coerce(value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        number = float(value)
        return number if 0 < number < 1 else None

    return ParamSpec(name, default, "a number above 0 and below 1", coerce)


def _list_or_empty(item: ParamSpec, default: Sequence[float | str]) -> ParamSpec:
    """A ``list_of`` param that also accepts ``[]``, which turns its step off."""
    spec = list_of(item, default)

    def coerce(value: object) -> ParamValue | None:
        return [] if value == [] else spec.coerce(value)  # type: ignore[return-value]

    return ParamSpec(spec.name, spec.default, f"{spec.expected}, or [] for none", coerce)


# Keep names and defaults identical to benchmarks/suites/deploy.yaml.
DEPLOY_PARAMS = (
    text("model", "small_cnn"),
    *data_params("digits"),
    positive_int("epochs", 10),
    positive_int("fine_tune_epochs", 6),
    _list_or_empty(_sparsity_item("sparsities", 0.5), [0.5, 0.75, 0.9]),
    _list_or_empty(choice("quantizations", "int8", QUANTIZATIONS), list(QUANTIZATIONS)),
    _list_or_empty(_sparsity_item("prune_then_int8", 0.75), [0.75]),
    positive_int("batch_size", 32),
    positive_float("learning_rate", 0.001),
    positive_int("latency_runs", 200),
    positive_int("throughput_batch", 32),
    positive_int("representative_samples", 100),
    non_negative_int("litert_threads", 1),
    non_negative_int("seed", 0),
    flag("keep_models", False),
)


def _unique(values: ParamValue) -> tuple[Any, ...]:
    items: ParamList = values if isinstance(values, list) else [values]
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class DeployParams:
    """The deploy suite's params, typed."""

    model: str
    data: DataChoice
    epochs: int  # baseline training
    fine_tune_epochs: int  # per pruned model, while its sparsity rises and then holds
    sparsities: tuple[float, ...]  # pruned variants measured as float32 TFLite files
    quantizations: tuple[str, ...]  # subset of QUANTIZATIONS
    prune_then_int8: tuple[float, ...]  # sparsities whose pruned model is also converted to int8
    batch_size: int  # training and fine-tuning batch
    learning_rate: float  # Adam, for training and fine-tuning
    latency_runs: int  # timed batch-1 calls per variant
    throughput_batch: int  # images per call for images/sec and for accuracy
    representative_samples: int  # training images that calibrate full-integer int8
    litert_threads: int  # CPU threads of the LiteRT interpreter; 0 means every CPU of the machine
    seed: int
    keep_models: bool  # keep the files in <run dir>/deploy-models instead of a temporary folder

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> DeployParams:
        """Types the effective params that ``resolve_params`` produced from ``DEPLOY_PARAMS``."""
        return cls(
            model=str(params["model"]),
            data=DataChoice.from_params(params),
            epochs=int(params["epochs"]),
            fine_tune_epochs=int(params["fine_tune_epochs"]),
            sparsities=tuple(float(s) for s in _unique(params["sparsities"])),
            quantizations=tuple(str(q) for q in _unique(params["quantizations"])),
            prune_then_int8=tuple(float(s) for s in _unique(params["prune_then_int8"])),
            batch_size=int(params["batch_size"]),
            learning_rate=float(params["learning_rate"]),
            latency_runs=int(params["latency_runs"]),
            throughput_batch=int(params["throughput_batch"]),
            representative_samples=int(params["representative_samples"]),
            litert_threads=int(params["litert_threads"]),
            seed=int(params["seed"]),
            keep_models=bool(params["keep_models"]),
        )


def pruned_variant(sparsity: float) -> str:
    """Returns a pruned variant's name: 0.75 -> ``pruned_75``, 0.875 -> ``pruned_87.5``."""
    return f"pruned_{sparsity * 100:g}"


@dataclass(frozen=True)
class Figures:
    """What was measured for one variant."""

    size: FileSize
    latency: Latency
    throughput: Throughput
    accuracy: float


@dataclass
class _Context:
    """What every variant's measurement needs: params, data, where files go, the baseline to compare with."""

    p: DeployParams
    split: ImageSplit
    directory: Path
    recorder: RunRecorder
    litert_threads: int  # the LiteRT interpreter's CPU threads
    baseline: Figures | None = None  # the float32 TFLite file's, once measured


def _ratio(value: int, reference: int) -> float:
    return round(value / reference, 4) if reference else 0.0


def _measure(ctx: _Context, path: Path, predict: Predict) -> Figures:
    p, split, stop = ctx.p, ctx.split, ctx.recorder.stop
    return Figures(
        size=file_size(path),
        latency=time_latency(predict, split.x_test, p.latency_runs, before_run=stop.check),
        throughput=time_throughput(predict, split.x_test, p.throughput_batch, before_batch=stop.check),
        accuracy=accuracy(predict, split.x_test, split.y_test, p.throughput_batch, before_batch=stop.check),
    )


def _record(
    ctx: _Context, variant: str, file_format: str, path: Path, figures: Figures, extra: Mapping[str, MetadataValue]
) -> None:
    """Records a variant's rows: the same variant, format, model and data on each, so they make one row."""
    baseline = ctx.baseline or figures  # the float32 baseline is its own reference
    size, latency, throughput = figures.size, figures.latency, figures.throughput
    delta = (figures.accuracy - baseline.accuracy) * 100.0
    common: dict[str, MetadataValue] = {
        "variant": variant,
        "format": file_format,
        "model": ctx.p.model,
        "data": ctx.p.data.name,
        "file": path.name,
        **extra,
    }
    runtime: dict[str, MetadataValue] = (
        {"runtime": "litert", "litert_threads": ctx.litert_threads}
        if file_format == TFLITE
        else {"runtime": "keras tf.function"}
    )
    bytes_ratio = _ratio(size.bytes, baseline.size.bytes)
    gzip_ratio = _ratio(size.gzip_bytes, baseline.size.gzip_bytes)
    latency_metadata = {
        **common,
        **runtime,
        "latency_batch": 1,
        "latency_runs": latency.runs,
        "latency_warmup_runs": latency.warmup_runs,
    }
    throughput_metadata = {
        **common,
        **runtime,
        "throughput_batch": throughput.batch,
        "throughput_images": throughput.images,
        "throughput_passes": throughput.passes,
    }
    accuracy_metadata = {**common, "split": "test", "test_images": len(ctx.split.x_test)}
    delta_metadata = {**accuracy_metadata, "baseline_variant": BASELINE, "baseline_accuracy": baseline.accuracy}
    add = ctx.recorder.add
    add(BENCHMARK, "model_bytes", size.bytes, "bytes", {**common, "ratio_to_float32": bytes_ratio})
    gzip_metadata = {**common, "gzip_level": GZIP_LEVEL, "ratio_to_float32": gzip_ratio}
    add(BENCHMARK, "model_bytes_gzip", size.gzip_bytes, "bytes", gzip_metadata)
    add(BENCHMARK, "latency_ms_p50", latency.p50_ms, "ms", latency_metadata)
    add(BENCHMARK, "latency_ms_p90", latency.p90_ms, "ms", latency_metadata)
    add_spread(ctx.recorder, BENCHMARK, throughput.spread, throughput_metadata)
    add(BENCHMARK, "accuracy", figures.accuracy, "fraction", accuracy_metadata)
    add(BENCHMARK, "accuracy_delta", delta, "points", delta_metadata)
    say(
        f"{variant} ({file_format}): {size.bytes} bytes ({bytes_ratio}x float32), gzip {size.gzip_bytes} "
        f"({gzip_ratio}x), latency p50 {latency.p50_ms:.3f} ms p90 {latency.p90_ms:.3f} ms, "
        f"{throughput.images_per_sec:.0f} images/s, accuracy {figures.accuracy:.4f} ({delta:+.2f} points)"
    )


def _tflite_variant(
    ctx: _Context, variant: str, model: Any, conversion: str, extra: Mapping[str, MetadataValue]
) -> Figures:
    from keras_bench.deploy_tflite import LiteRTModel, convert

    representative = _representative_images(ctx) if conversion == "int8" else None
    path = ctx.directory / f"{variant}.tflite"
    path.write_bytes(convert(model, conversion, representative))
    figures = _measure(ctx, path, LiteRTModel(path, ctx.litert_threads).predict)
    calibration = {"representative_images": len(representative)} if representative is not None else {}
    _record(ctx, variant, TFLITE, path, figures, {"conversion": conversion, **calibration, **extra})
    return figures


def _representative_images(ctx: _Context) -> np.ndarray:
    """A seeded random subset of the training images, ``representative_samples`` of them at most."""
    rng = np.random.default_rng(ctx.p.seed)
    count = min(ctx.p.representative_samples, len(ctx.split.x_train))
    return np.asarray(ctx.split.x_train[rng.permutation(len(ctx.split.x_train))[:count]])


def _keras_variant(ctx: _Context, variant: str, model: Any, extra: Mapping[str, MetadataValue]) -> Figures:
    from keras_bench.deploy_keras import inference_function

    path = ctx.directory / f"{variant}.keras"
    model.save(path)
    figures = _measure(ctx, path, inference_function(model))
    _record(ctx, variant, KERAS, path, figures, extra)
    return figures


def _keras_float32(ctx: _Context, baseline_model: Any) -> Figures:
    from keras_bench.deploy_keras import copy_model

    return _keras_variant(ctx, KERAS_BASELINE, copy_model(baseline_model), {})


def _keras_int8(ctx: _Context, baseline_model: Any) -> Figures:
    from keras_bench.deploy_keras import quantize_keras_int8

    quantized, layers = quantize_keras_int8(baseline_model)
    if not layers:
        raise VariantSkipped(
            f"keras_int8 skipped: model.quantize('int8') found no layer it can quantise in model {ctx.p.model!r} "
            "(Keras quantises Dense, EinsumDense and Embedding layers)"
        )
    extra: dict[str, MetadataValue] = {"quantized_layers": len(layers), "quantized_layer_names": ",".join(layers)}
    return _keras_variant(ctx, "keras_int8", quantized, extra)


def _train_baseline(ctx: _Context, metadata: Mapping[str, MetadataValue]) -> Any:
    import keras

    from keras_bench.keras_callbacks import ProgressCallback, StopCheckCallback
    from keras_bench.training import compile_classifier

    p, split = ctx.p, ctx.split
    keras.utils.set_random_seed(p.seed)
    model = build_model(p.model, image_shape(split), split.num_classes, dropout=DROPOUT)
    compile_classifier(model, "adam", p.learning_rate)
    started = time.perf_counter()
    model.fit(
        split.x_train,
        split.y_train,
        batch_size=p.batch_size,
        epochs=p.epochs,
        verbose=0,
        callbacks=[ProgressCallback(p.epochs), StopCheckCallback(ctx.recorder.stop)],
    )
    seconds = time.perf_counter() - started
    scores = model.evaluate(split.x_test, split.y_test, batch_size=p.batch_size, verbose=0, return_dict=True)
    ctx.recorder.add("train", "epochs", p.epochs, "epochs", metadata)
    ctx.recorder.add("train", "seconds", seconds, "s", metadata)
    ctx.recorder.add("train", "accuracy", float(scores["accuracy"]), "fraction", {**metadata, "split": "test"})
    say(f"baseline: {p.epochs} epochs in {seconds:.1f}s, test accuracy {float(scores['accuracy']):.4f} (keras)")
    return model


def _prune(
    ctx: _Context, baseline_model: Any, sparsity: float, metadata: Mapping[str, MetadataValue]
) -> tuple[Any, PruningOutcome]:
    """Returns a pruned, fine-tuned copy of the baseline and the pruning outcome; records the fine-tuning time."""
    import keras

    from keras_bench.deploy_keras import copy_model, prune_with_fine_tuning
    from keras_bench.keras_callbacks import StopCheckCallback

    p, split = ctx.p, ctx.split
    keras.utils.set_random_seed(p.seed)
    model = copy_model(baseline_model)
    outcome = prune_with_fine_tuning(
        model,
        split.x_train,
        split.y_train,
        final_sparsity=sparsity,
        epochs=p.fine_tune_epochs,
        batch_size=p.batch_size,
        learning_rate=p.learning_rate,
        callbacks=[StopCheckCallback(ctx.recorder.stop)],
    )
    schedule = outcome.schedule
    fine_tune_metadata: dict[str, MetadataValue] = {
        **metadata,
        "target_sparsity": sparsity,
        "steps": outcome.steps,
        "schedule_end_step": schedule.end_step,
        "schedule_frequency": schedule.frequency,
        "schedule_power": schedule.power,
    }
    ctx.recorder.add("prune_fine_tune", "seconds", outcome.seconds, "s", fine_tune_metadata)
    ctx.recorder.add("prune_fine_tune", "epochs", p.fine_tune_epochs, "epochs", fine_tune_metadata)
    say(
        f"pruned to {sparsity:g}: {outcome.sparsity.zeros}/{outcome.sparsity.total} kernel weights zero "
        f"({outcome.sparsity.fraction:.4f}) after {p.fine_tune_epochs} fine-tuning epochs in {outcome.seconds:.1f}s"
    )
    return model, outcome


def _record_sparsity(
    ctx: _Context, variant: str, file_format: str, path: Path, outcome: PruningOutcome, target: float
) -> None:
    count = outcome.sparsity
    ctx.recorder.add(
        BENCHMARK,
        "sparsity",
        count.fraction,
        "fraction",
        {
            "variant": variant,
            "format": file_format,
            "model": ctx.p.model,
            "data": ctx.p.data.name,
            "file": path.name,
            "target_sparsity": target,
            "zero_weights": count.zeros,
            "pruned_weights": count.total,
            "pruned_layers": outcome.pruned_layers,
            "counted_in": "prunable kernels of the fine-tuned keras model",
        },
    )


def _pruned_float32_and_int8(
    ctx: _Context, variant: str, conversion: str, model: Any, outcome: PruningOutcome, sparsity: float
) -> Figures:
    extra: dict[str, MetadataValue] = {"target_sparsity": sparsity, "fine_tune_epochs": ctx.p.fine_tune_epochs}
    figures = _tflite_variant(ctx, variant, model, conversion, extra)
    _record_sparsity(ctx, variant, TFLITE, ctx.directory / f"{variant}.tflite", outcome, sparsity)
    return figures


def _pruned_variants(ctx: _Context, baseline_model: Any, train_metadata: Mapping[str, MetadataValue]) -> list[bool]:
    """Prunes for every sparsity asked for, measures the float32 and int8 files; returns one success flag each."""
    from keras_bench.deploy_keras import copy_model

    p = ctx.p
    done: list[bool] = []
    for sparsity in sorted(set(p.sparsities) | set(p.prune_then_int8)):
        name = pruned_variant(sparsity)
        variants = [(name, "float32")] if sparsity in p.sparsities else []
        variants += [(f"{name}_int8", "int8")] if sparsity in p.prune_then_int8 else []
        pruned = guarded(
            ctx.recorder, f"deploy {name} fine-tune", partial(_prune, ctx, baseline_model, sparsity, train_metadata)
        )
        if pruned is None:
            done.extend(False for _ in variants)
            continue
        model, outcome = pruned
        if p.keep_models:
            copy_model(model).save(ctx.directory / f"{name}.keras")  # without the fine-tuning optimizer's state
        for variant, conversion in variants:
            measure = partial(_pruned_float32_and_int8, ctx, variant, conversion, model, outcome, sparsity)
            done.append(guarded(ctx.recorder, f"deploy {variant}", measure) is not None)
    return done


def _require_tensorflow() -> None:
    from keras_bench.backends import backend_name

    name = backend_name()
    if name != "tensorflow":
        raise ParamError(
            f"suite '{SUITE_NAME}': TFLite conversion needs KERAS_BACKEND=tensorflow, received backend {name}"
        )


def run_deploy(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    """Trains the baseline, then makes and measures every variant the params ask for.

    Args:
        params: Effective params from ``DEPLOY_PARAMS``.
        recorder: Receives samples, phase timings and the errors of failed or skipped variants.

    Raises:
        ParamError: On a backend other than TensorFlow, without ai-edge-litert, or for a model the data's
            images cannot feed.
        RuntimeError: When variants were asked for and every one of them failed.
    """
    p = DeployParams.from_params(params)
    with recorder.phase("import", "import"), lean_imports():
        import keras

        _require_tensorflow()
        from keras_bench.deploy_tflite import require_litert

        require_litert()
        import keras_bench.deploy_keras  # noqa: F401 - imports TensorFlow here, inside the timed import
    say(f"imported keras {keras.__version__} (backend {keras.backend.backend()}) in {recorder.seconds['import']:.1f}s")

    with recorder.phase("data", "data"):
        split = p.data.load(p.seed)
    check_model(p.model, image_shape(split))
    say(f"data: {p.data.name} {len(split.x_train)} train / {len(split.x_test)} test images, shape {split.image_shape}")

    keep = run_directory() / MODELS_FOLDER
    if p.keep_models:
        keep.mkdir(parents=True, exist_ok=True)
    directory = keep if p.keep_models else Path(tempfile.mkdtemp(prefix=f"{MODELS_FOLDER}-", dir=run_directory()))
    ctx = _Context(p, split, directory, recorder, litert_threads=p.litert_threads or os.cpu_count() or 1)
    try:
        metadata = base_metadata(keras, p.model, p.data.name, split, p.batch_size)
        with recorder.phase("train", "compute"):
            baseline_model = _train_baseline(ctx, metadata)
        with recorder.phase(f"deploy {BASELINE}", "compute"):
            ctx.baseline = _tflite_variant(ctx, BASELINE, baseline_model, "float32", {})
        done: list[bool] = []
        for quantization in p.quantizations:
            stage = f"deploy {quantization}"
            if quantization == "keras_int8":
                reference = guarded(recorder, f"deploy {KERAS_BASELINE}", partial(_keras_float32, ctx, baseline_model))
                done.append(reference is not None)
                # A model without a layer Keras can quantise is recorded as a VariantSkipped entry in errors.
                done.append(guarded(recorder, stage, partial(_keras_int8, ctx, baseline_model)) is not None)
            else:
                convert = partial(_tflite_variant, ctx, quantization, baseline_model, quantization, {})
                done.append(guarded(recorder, stage, convert) is not None)
        done.extend(_pruned_variants(ctx, baseline_model, metadata))
    finally:
        if not p.keep_models:
            shutil.rmtree(directory, ignore_errors=True)
    if done and not any(done):
        raise RuntimeError(f"all {len(done)} deploy variants after the float32 baseline failed; see the errors list")
    if p.keep_models:
        say(f"model files kept in {directory}")


DEPLOY = Suite(
    name=SUITE_NAME,
    description="Pruning and post-training quantisation of one trained model (TFLite float32, dynamic range, "
    "float16, int8; Keras int8; magnitude pruning; pruning + int8): file size, gzip size, batch-1 latency, "
    "images/sec and accuracy per variant. Needs the TensorFlow backend and ai-edge-litert.",
    params=DEPLOY_PARAMS,
    run=run_deploy,
)
