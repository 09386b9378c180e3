"""Suite ``deploy``: what pruning and quantisation gain in size and speed, and cost in accuracy, on one model.

Trains the model briefly (the float32 baseline), then makes deployable variants of it: TFLite files from
TensorFlow's converter (float32, dynamic-range, float16, full-integer int8) run in the LiteRT interpreter,
Keras 3's own ``model.quantize("int8")`` run in Keras, magnitude-pruned copies fine-tuned with their masks
(``deploy.keras_variants.MagnitudePruning``), and pruned copies converted to int8. Every variant gets the same rows:
file bytes and gzip bytes, batch-1 latency p50/p90, batched images/sec, held-out accuracy and its change from
the float32 baseline. Needs KERAS_BACKEND=tensorflow (the TFLite converter) and ``ai-edge-litert``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_bench.deploy.tflite import require_litert
from keras_bench.errors import ParamError
from keras_bench.models.backends import backend_name, lean_imports
from keras_bench.models.builders import build_model, check_model
from keras_bench.params import ParamValue
from keras_bench.progress import say
from keras_bench.recorder import RunRecorder, guarded
from keras_bench.results import MetadataValue
from keras_bench.suites.base import Suite
from keras_bench.suites.deploy_params import DEPLOY_PARAMS, DeployParams
from keras_bench.suites.deploy_variants import (
    BASELINE,
    KERAS_BASELINE,
    VariantContext,
    keras_float32,
    keras_int8,
    pruned_tflite_variant,
    pruned_variant,
    tflite_variant,
)
from keras_bench.suites.training_recipe import base_metadata, image_shape
from keras_bench.training.checkpoint import run_directory
from keras_bench.training.fit import compile_classifier

if TYPE_CHECKING:
    from keras_bench.deploy.keras_variants import PruningOutcome  # imports Keras: only for the type checker

SUITE_NAME = "deploy"
DROPOUT = 0.25  # the smoke suite's small CNN; only used while training and fine-tuning
MODELS_FOLDER = "deploy-models"  # in the run directory, when keep_models is true


def _train_baseline(ctx: VariantContext, metadata: Mapping[str, MetadataValue]) -> Any:
    import keras  # loaded by the timed import already; at module level --check would load it

    from keras_bench.timing.callbacks import ProgressCallback, StopCheckCallback

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
    ctx: VariantContext, baseline_model: Any, sparsity: float, metadata: Mapping[str, MetadataValue]
) -> tuple[Any, PruningOutcome]:
    """Returns a pruned, fine-tuned copy of the baseline and the pruning outcome; records the fine-tuning time."""
    import keras  # loaded by the timed import already; at module level --check would load it

    from keras_bench.deploy.keras_variants import copy_model, prune_with_fine_tuning
    from keras_bench.timing.callbacks import StopCheckCallback

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


def _pruned_variants(
    ctx: VariantContext, baseline_model: Any, train_metadata: Mapping[str, MetadataValue]
) -> list[bool]:
    """Prunes for every sparsity asked for, measures the float32 and int8 files; returns one success flag each."""
    # loaded by the timed import already; at module level --check would load it
    from keras_bench.deploy.keras_variants import copy_model

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
            measure = partial(pruned_tflite_variant, ctx, variant, conversion, model, outcome, sparsity)
            done.append(guarded(ctx.recorder, f"deploy {variant}", measure) is not None)
    return done


def _require_tensorflow() -> None:
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
        import keras  # timed: the run's first Keras import

        _require_tensorflow()
        require_litert()
        import keras_bench.deploy.keras_variants  # noqa: F401 - imports TensorFlow here, inside the timed import
    say(f"imported keras {keras.__version__} (backend {keras.backend.backend()}) in {recorder.seconds['import']:.1f}s")

    with recorder.phase("data", "data"):
        split = p.data.load(p.seed)
    check_model(p.model, image_shape(split))
    say(f"data: {p.data.name} {len(split.x_train)} train / {len(split.x_test)} test images, shape {split.image_shape}")

    keep = run_directory() / MODELS_FOLDER
    if p.keep_models:
        keep.mkdir(parents=True, exist_ok=True)
    directory = keep if p.keep_models else Path(tempfile.mkdtemp(prefix=f"{MODELS_FOLDER}-", dir=run_directory()))
    ctx = VariantContext(p, split, directory, recorder, litert_threads=p.litert_threads or os.cpu_count() or 1)
    try:
        metadata = base_metadata(keras, p.model, p.data.name, split, p.batch_size)
        with recorder.phase("train", "compute"):
            baseline_model = _train_baseline(ctx, metadata)
        with recorder.phase(f"deploy {BASELINE}", "compute"):
            ctx.baseline = tflite_variant(ctx, BASELINE, baseline_model, "float32", {})
        done: list[bool] = []
        for quantization in p.quantizations:
            stage = f"deploy {quantization}"
            if quantization == "keras_int8":
                reference = guarded(recorder, f"deploy {KERAS_BASELINE}", partial(keras_float32, ctx, baseline_model))
                done.append(reference is not None)
                # A model without a layer Keras can quantise is recorded as a VariantSkipped entry in errors.
                done.append(guarded(recorder, stage, partial(keras_int8, ctx, baseline_model)) is not None)
            else:
                convert = partial(tflite_variant, ctx, quantization, baseline_model, quantization, {})
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
