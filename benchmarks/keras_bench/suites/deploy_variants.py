"""One deploy variant measured and recorded: its file, latency, throughput and accuracy against the baseline.

A variant is a TFLite file run in the LiteRT interpreter or a ``.keras`` file run in Keras; both are measured by
``deploy.measure`` through a ``predict(images)`` callable and recorded as the same rows, so that every variant is
one row of the same columns. ``deploy.keras_variants`` imports Keras and TensorFlow at module level, so it is
imported inside the functions that need it: the suite registry, which ``--check`` imports, stays free of both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_bench.data.datasets import ImageSplit
from keras_bench.deploy.measure import (
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
from keras_bench.deploy.tflite import LiteRTModel, convert
from keras_bench.progress import say
from keras_bench.recorder import RunRecorder
from keras_bench.results import MetadataValue
from keras_bench.suites.deploy_params import DeployParams
from keras_bench.timing.rows import add_spread

if TYPE_CHECKING:
    from keras_bench.deploy.keras_variants import PruningOutcome  # imports Keras: only for the type checker

BENCHMARK = "deploy"
TFLITE, KERAS = "tflite", "keras"
BASELINE = "float32"
KERAS_BASELINE = "keras_float32"  # the float32 model as a .keras file: the reference of keras_int8


class VariantSkipped(Exception):
    """A variant that does not apply to this model (e.g. Keras int8 with no quantisable layer)."""


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
class VariantContext:
    """What every variant's measurement needs: params, data, where files go, the baseline to compare with."""

    p: DeployParams
    split: ImageSplit
    directory: Path
    recorder: RunRecorder
    litert_threads: int  # the LiteRT interpreter's CPU threads
    baseline: Figures | None = None  # the float32 TFLite file's, once measured


def _ratio(value: int, reference: int) -> float:
    return round(value / reference, 4) if reference else 0.0


def _measure(ctx: VariantContext, path: Path, predict: Predict) -> Figures:
    p, split, stop = ctx.p, ctx.split, ctx.recorder.stop
    return Figures(
        size=file_size(path),
        latency=time_latency(predict, split.x_test, p.latency_runs, before_run=stop.check),
        throughput=time_throughput(predict, split.x_test, p.throughput_batch, before_batch=stop.check),
        accuracy=accuracy(predict, split.x_test, split.y_test, p.throughput_batch, before_batch=stop.check),
    )


def _record(
    ctx: VariantContext,
    variant: str,
    file_format: str,
    path: Path,
    figures: Figures,
    extra: Mapping[str, MetadataValue],
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


def tflite_variant(
    ctx: VariantContext, variant: str, model: Any, conversion: str, extra: Mapping[str, MetadataValue]
) -> Figures:
    """Converts ``model`` to ``<variant>.tflite`` (int8 calibrated on training images), measures it in LiteRT and
    records its rows with ``extra`` in their metadata."""

    representative = _representative_images(ctx) if conversion == "int8" else None
    path = ctx.directory / f"{variant}.tflite"
    path.write_bytes(convert(model, conversion, representative))
    figures = _measure(ctx, path, LiteRTModel(path, ctx.litert_threads).predict)
    calibration = {"representative_images": len(representative)} if representative is not None else {}
    _record(ctx, variant, TFLITE, path, figures, {"conversion": conversion, **calibration, **extra})
    return figures


def _representative_images(ctx: VariantContext) -> np.ndarray:
    """A seeded random subset of the training images, ``representative_samples`` of them at most."""
    rng = np.random.default_rng(ctx.p.seed)
    count = min(ctx.p.representative_samples, len(ctx.split.x_train))
    return np.asarray(ctx.split.x_train[rng.permutation(len(ctx.split.x_train))[:count]])


def _keras_variant(ctx: VariantContext, variant: str, model: Any, extra: Mapping[str, MetadataValue]) -> Figures:
    from keras_bench.deploy.keras_variants import inference_function  # imports Keras and TensorFlow

    path = ctx.directory / f"{variant}.keras"
    model.save(path)
    figures = _measure(ctx, path, inference_function(model))
    _record(ctx, variant, KERAS, path, figures, extra)
    return figures


def keras_float32(ctx: VariantContext, baseline_model: Any) -> Figures:
    """Measures a copy of the float32 baseline as a ``.keras`` file in Keras: the reference of ``keras_int8``."""
    from keras_bench.deploy.keras_variants import copy_model  # imports Keras and TensorFlow

    return _keras_variant(ctx, KERAS_BASELINE, copy_model(baseline_model), {})


def keras_int8(ctx: VariantContext, baseline_model: Any) -> Figures:
    """Measures Keras's own ``quantize("int8")`` of the baseline, run in Keras.

    Raises:
        VariantSkipped: The model has no layer Keras can quantise.
    """
    from keras_bench.deploy.keras_variants import quantize_keras_int8  # imports Keras and TensorFlow

    quantized, layers = quantize_keras_int8(baseline_model)
    if not layers:
        raise VariantSkipped(
            f"keras_int8 skipped: model.quantize('int8') found no layer it can quantise in model {ctx.p.model!r} "
            "(Keras quantises Dense, EinsumDense and Embedding layers)"
        )
    extra: dict[str, MetadataValue] = {"quantized_layers": len(layers), "quantized_layer_names": ",".join(layers)}
    return _keras_variant(ctx, "keras_int8", quantized, extra)


def _record_sparsity(
    ctx: VariantContext, variant: str, file_format: str, path: Path, outcome: PruningOutcome, target: float
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


def pruned_tflite_variant(
    ctx: VariantContext, variant: str, conversion: str, model: Any, outcome: PruningOutcome, sparsity: float
) -> Figures:
    """Measures a pruned, fine-tuned model as a TFLite file (float32 or int8) and records its sparsity beside."""
    extra: dict[str, MetadataValue] = {"target_sparsity": sparsity, "fine_tune_epochs": ctx.p.fine_tune_epochs}
    figures = tflite_variant(ctx, variant, model, conversion, extra)
    _record_sparsity(ctx, variant, TFLITE, ctx.directory / f"{variant}.tflite", outcome, sparsity)
    return figures
