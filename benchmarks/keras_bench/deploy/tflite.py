"""TFLite files from a Keras model (TensorFlow's converter) and predictions from them (the LiteRT interpreter).

Conversions: ``float32`` (no optimisation), ``dynamic_range`` (int8 weights, float activations quantised on
the fly), ``float16`` (float16 weights) and ``int8`` (full integer: int8 weights and activations, int8 input
and output, scales calibrated on a representative dataset). The interpreter is ``ai_edge_litert``'s;
``tf.lite.Interpreter`` is deprecated. TensorFlow and LiteRT are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from keras_bench.errors import ParamError

CONVERSIONS = ("float32", "dynamic_range", "float16", "int8")
LITERT_INSTALL = "pip install ai-edge-litert"


def require_litert() -> None:
    """Checks that the LiteRT interpreter can be imported.

    Raises:
        ParamError: One line saying how to install it.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError as exc:
        raise ParamError(
            f"suite 'deploy': running .tflite files needs the LiteRT interpreter ({LITERT_INSTALL}), "
            f"which is not installed: {exc}"
        ) from exc


def convert(model: Any, conversion: str, representative: np.ndarray | None = None) -> bytes:
    """Converts a Keras model to a TFLite flatbuffer.

    Args:
        model: A float32 Keras model (TensorFlow backend).
        conversion: One of ``CONVERSIONS``.
        representative: Training images, one calibration example each; required for ``int8``.

    Returns:
        The ``.tflite`` file's bytes.

    Raises:
        ValueError: For an unknown conversion, or ``int8`` without representative images.
    """
    import tensorflow as tf  # lazy: suites import this module, and --check must not load TensorFlow

    if conversion not in CONVERSIONS:
        raise ValueError(f"unknown conversion. Received: conversion={conversion!r}; expected one of {CONVERSIONS}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if conversion != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if conversion == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if conversion == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 conversion needs representative images. Received: none")
        images = np.asarray(representative, dtype=np.float32)

        def calibration() -> Iterator[list[np.ndarray]]:
            for index in range(len(images)):
                yield [images[index : index + 1]]

        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    # The Keras export behind from_keras_model prints its SavedModel signature to stdout, and int8 conversion
    # warns about input statistics it does not need: neither belongs in the payload's progress log.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flatbuffer: bytes = converter.convert()
    return flatbuffer


class LiteRTModel:
    """One ``.tflite`` file in the LiteRT interpreter, predicting batches of float images.

    The input is resized when a batch of another size comes (a batch-1 latency run, then batched passes);
    an int8 input is quantised with the file's own scale and zero point.
    """

    def __init__(self, path: Path, threads: int) -> None:
        """Loads the file and allocates its tensors.

        Args:
            path: The ``.tflite`` file.
            threads: CPU threads the interpreter may use.
        """
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        self.threads = threads
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output_index = int(self._interpreter.get_output_details()[0]["index"])
        self._batch = int(self._input["shape"][0])

    @property
    def input_dtype(self) -> np.dtype[Any]:
        """The input tensor's type: float32, or int8 for a full-integer file."""
        dtype: np.dtype[Any] = np.dtype(self._input["dtype"])
        return dtype

    def _quantised(self, images: np.ndarray) -> np.ndarray:
        if self.input_dtype == np.float32:
            return np.asarray(images, dtype=np.float32)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(self.input_dtype)
        quantised: np.ndarray = np.clip(np.round(images / scale + zero_point), info.min, info.max)
        return quantised.astype(self.input_dtype)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Runs one batch and returns the raw output (int8 scores for a full-integer file: argmax still works).

        Args:
            images: Float images in [0, 1], batch first.
        """
        if len(images) != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [len(images), *images.shape[1:]])
            self._interpreter.allocate_tensors()
            self._input = self._interpreter.get_input_details()[0]
            self._batch = len(images)
        self._interpreter.set_tensor(self._input["index"], self._quantised(images))
        self._interpreter.invoke()
        return np.asarray(self._interpreter.get_tensor(self._output_index))
