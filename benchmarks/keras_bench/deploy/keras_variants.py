"""The Keras side of the deploy suite: pruning masks kept through fine-tuning, Keras's own int8, inference calls.

Pruning runs on Keras 3 itself: a callback recomputes each kernel's magnitude mask on the polynomial schedule
(``deploy.pruning``) and multiplies every prunable kernel by its mask after every training batch, so the
forward pass only ever sees the pruned weights and no pruning library or wrapper layer is involved.

Imports Keras and TensorFlow at module level: import this module only inside a suite run, after the timed
import (the deploy suite needs the TensorFlow backend anyway, for TFLite conversion).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_bench.deploy.pruning import (
    PolynomialSchedule,
    SparsityCount,
    count_zeros,
    fine_tune_schedule,
    magnitude_mask,
)
from keras_bench.training.fit import compile_classifier

# Layers whose `kernel` is pruned. Biases, normalisation and depthwise kernels are left dense: they are a small
# share of the weights and pruning them costs accuracy out of proportion.
PRUNABLE_LAYERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
INT8 = "int8"


def walk_layers(layer: Any) -> Iterator[Any]:
    """Yields a layer and, for a model or any layer holding layers, every layer nested in it, depth first."""
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from walk_layers(child)


def prunable_kernels(model: Any) -> list[Any]:
    """Returns the kernel variables the deploy suite prunes: those of Dense and Conv1D/2D/3D layers, nested included.

    Args:
        model: A built Keras model.
    """
    return [layer.kernel for layer in walk_layers(model) if isinstance(layer, PRUNABLE_LAYERS)]


def kernel_values(kernels: Sequence[Any]) -> list[np.ndarray]:
    """Returns the kernels' current values as numpy arrays."""
    return [np.asarray(keras.ops.convert_to_numpy(kernel)) for kernel in kernels]


class MagnitudePruning(keras.callbacks.Callback):  # type: ignore[misc]
    """Prunes kernels to the schedule's sparsity and keeps them pruned through ``fit``.

    ``step`` counts training batches across every ``fit`` this callback takes part in (as tfmot's step follows
    the optimizer's iterations). After each batch, when ``schedule.updates_at(step)``, each kernel's mask is
    recomputed from the masked weights at ``schedule.sparsity_at(step)``, so a weight once pruned stays pruned;
    then every kernel is multiplied by its mask, undoing what the optimizer step did to pruned weights.
    """

    def __init__(self, kernels: Sequence[Any], schedule: PolynomialSchedule) -> None:
        """Creates the callback.

        Args:
            kernels: The variables to prune, e.g. ``prunable_kernels(model)``.
            schedule: When to recompute the masks and to what sparsity.
        """
        super().__init__()
        self.kernels = list(kernels)
        self.schedule = schedule
        self.step = 0
        self.masks = [np.ones(tuple(kernel.shape), dtype=np.float32) for kernel in self.kernels]
        self._mask_tensors: list[Any] = [None] * len(self.kernels)

    def _update_masks(self) -> None:
        sparsity = self.schedule.sparsity_at(self.step)
        for index, (values, mask) in enumerate(zip(kernel_values(self.kernels), self.masks, strict=True)):
            self.masks[index] = magnitude_mask(values * mask, sparsity)
            self._mask_tensors[index] = None

    def apply_masks(self) -> None:
        """Multiplies every kernel by its current mask."""
        for index, (kernel, mask) in enumerate(zip(self.kernels, self.masks, strict=True)):
            if self._mask_tensors[index] is None:
                self._mask_tensors[index] = keras.ops.convert_to_tensor(mask, dtype=kernel.dtype)
            kernel.assign(keras.ops.multiply(kernel, self._mask_tensors[index]))

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.step == 0 and self.schedule.updates_at(0):
            self._update_masks()
        self.apply_masks()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.step += 1
        if self.schedule.updates_at(self.step):
            self._update_masks()
        self.apply_masks()


@dataclass(frozen=True)
class PruningOutcome:
    """A pruned, fine-tuned model's measured sparsity and what it took."""

    sparsity: SparsityCount  # zeros counted in the prunable kernels after fine-tuning
    schedule: PolynomialSchedule
    pruned_layers: int  # kernels pruned
    steps: int  # fine-tuning steps
    seconds: float  # wall time of the fine-tuning fit


def prune_with_fine_tuning(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    final_sparsity: float,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    callbacks: Sequence[Any] = (),
) -> PruningOutcome:
    """Prunes a trained model in place to ``final_sparsity`` while fine-tuning it with Adam.

    Args:
        model: A trained classifier; it is recompiled with a fresh Adam optimizer.
        x: Training images.
        y: Training labels.
        final_sparsity: Fraction of each prunable kernel's weights that ends up zero.
        epochs: Fine-tuning epochs; the sparsity rises over the first ``RAMP_FRACTION`` of their steps.
        batch_size: Training batch.
        learning_rate: Adam's learning rate.
        callbacks: More callbacks for ``fit`` (progress, stop checks).

    Returns:
        The outcome, sparsity counted from the final weights.

    Raises:
        ValueError: When the model has no prunable kernel.
    """
    kernels = prunable_kernels(model)
    if not kernels:
        raise ValueError(f"model {model.name!r} has no Dense or Conv kernel to prune")
    steps = epochs * math.ceil(len(x) / batch_size)
    pruning = MagnitudePruning(kernels, fine_tune_schedule(final_sparsity, steps))
    compile_classifier(model, "adam", learning_rate)
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[pruning, *callbacks])
    seconds = time.perf_counter() - started
    return PruningOutcome(count_zeros(kernel_values(kernels)), pruning.schedule, len(kernels), steps, seconds)


def copy_model(model: Any) -> Any:
    """Returns an uncompiled copy of a Sequential or functional model with the same weights.

    Rebuilt from its config rather than with ``keras.models.clone_model``, which in Keras 3.15 also copies the
    compiled optimizer: a saved ``.keras`` file would then carry the optimizer's state (3x the weights with Adam).
    """
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def quantize_keras_int8(model: Any) -> tuple[Any, tuple[str, ...]]:
    """Returns a copy quantised with Keras's own ``model.quantize("int8")``, and the layers it quantised.

    Keras 3.15 quantises Dense, EinsumDense and Embedding layers and warns for each other layer ("does not
    have a `quantize` method implemented"); those expected warnings are silenced here. The result runs in
    Keras only (it does not convert to TFLite).

    Args:
        model: A float32 model; it is left as it is.

    Returns:
        The quantised copy and the names of its int8 layers (empty when no layer could be quantised).
    """
    quantized = copy_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized.quantize(INT8)
    names = tuple(
        layer.name for layer in walk_layers(quantized) if getattr(layer, "quantization_mode", None) == INT8
    )
    return quantized, names


def inference_function(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Returns a compiled inference call: images in, the model's outputs (inference mode) out as numpy.

    A ``tf.function`` of ``model(images, training=False)``, traced once per batch shape, so a timed call is
    the graph's work and not ``model.predict``'s per-call set-up.
    """
    call = tf.function(lambda images: model(images, training=False), reduce_retracing=True)

    def predict(images: np.ndarray) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(call(tf.convert_to_tensor(images))))

    return predict
