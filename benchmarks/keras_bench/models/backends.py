"""Facts about the Keras backend in use, precision policies and XLA, the same way on every backend.

Imports Keras only inside functions: call these inside a suite run, after its timed import.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from keras_bench.errors import ParamError

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
TENSORFLOW = "tensorflow"
# The module whose __version__ is the backend's version.
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy"}


@dataclass(frozen=True)
class BackendFacts:
    """The backend a measurement ran on."""

    name: str  # tensorflow, jax, torch
    version: str | None
    gpus: int  # accelerators of kind GPU the backend sees


# Packages that Keras and TensorFlow import whenever they are installed, for features this payload never uses:
# pandas (Keras's data adapters accept DataFrames), scikit-learn (Keras's sklearn wrappers) and JAX (TFLite's
# converter from JAX functions). Together 2.8 of the ~8 CPU-s that importing Keras on TensorFlow takes on a 2-core VM
# (docs/performance.md, "The payload's start").
LEAN_IMPORTS_HELD = ("pandas", "sklearn", "jax")


@contextmanager
def lean_imports() -> Iterator[None]:
    """Imports of Keras or TensorFlow inside the block skip the optional packages in ``LEAN_IMPORTS_HELD``.

    Each package not yet imported is held as ``None`` in ``sys.modules``, which Keras and TensorFlow take as not
    installed (they import them in ``try``/``except ImportError``), and released at the end of the block: a later
    plain ``import`` of it works as usual. JAX is held only when ``KERAS_BACKEND`` says ``tensorflow``: on the JAX
    backend (or one chosen in ``keras.json``) Keras needs it.
    """
    held = [name for name in LEAN_IMPORTS_HELD if name not in sys.modules]
    if os.environ.get("KERAS_BACKEND") != TENSORFLOW:
        held = [name for name in held if name != "jax"]
    for name in held:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in held:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def backend_name() -> str:
    """Returns the Keras backend in use: ``tensorflow``, ``jax``, ``torch`` or ``numpy``."""
    import keras  # lazy: suites import this module, and --check must not load Keras

    return str(keras.backend.backend())


def backend_version(name: str) -> str | None:
    """Returns the backend library's version, or None when it cannot be imported.

    Args:
        name: A backend name from ``backend_name()``.
    """
    module = BACKEND_MODULES.get(name)
    if module is None:
        return None
    try:
        return str(importlib.import_module(module).__version__)
    except (ImportError, AttributeError):
        return None


def gpu_count(name: str) -> int:
    """Returns how many GPUs the backend can run on; 0 on a CPU-only machine or build.

    Args:
        name: A backend name from ``backend_name()``.
    """
    if name == "tensorflow":
        import tensorflow as tf  # only the backend in use is imported

        return len(tf.config.list_physical_devices("GPU"))
    if name == "jax":
        import jax  # only the backend in use is imported

        return sum(1 for device in jax.devices() if device.platform == "gpu")
    if name == "torch":
        import torch  # only the backend in use is imported

        return int(torch.cuda.device_count())
    return 0


def backend_facts() -> BackendFacts:
    """Returns the name, version and GPU count of the backend in use."""
    name = backend_name()
    return BackendFacts(name, backend_version(name), gpu_count(name))


def require_tensorflow(param: str, feature: str) -> Any:
    """Returns the ``tensorflow`` module, or raises when another Keras backend is in use.

    Args:
        param: The param that asked for the feature, named in the error.
        feature: What needs TensorFlow, e.g. ``"the tf.data pipeline"``.

    Returns:
        The imported ``tensorflow`` module.

    Raises:
        ParamError: One line naming the param and the backend, saying KERAS_BACKEND=tensorflow is needed.
    """
    name = backend_name()
    if name != TENSORFLOW:
        raise ParamError(f"param '{param}': {feature} needs KERAS_BACKEND=tensorflow, received backend {name}")
    import tensorflow as tf  # only reached on the TensorFlow backend

    return tf


def check_precision(precision: str) -> str:
    """Returns the precision when it is one of ``PRECISIONS``.

    Raises:
        ParamError: Naming the ``precisions`` param and the value received.
    """
    if precision not in PRECISIONS:
        raise ParamError(
            f"param 'precisions': expected items each one of {', '.join(PRECISIONS)}, received {precision!r}"
        )
    return precision


@contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Sets Keras's global dtype policy for building and training a model, and restores the previous one.

    ``mixed_float16`` and ``mixed_bfloat16`` compute in 16 bits and keep float32 variables; Keras wraps the
    optimizer in a ``LossScaleOptimizer`` for ``mixed_float16`` at compile time. Build the model inside
    the block: layers take the policy when they are created.

    Args:
        precision: One of ``PRECISIONS``.
    """
    import keras  # lazy: suites import this module, and --check must not load Keras

    check_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compile_options(xla: bool) -> dict[str, Any]:
    """Returns the ``model.compile`` keyword arguments that turn XLA compilation on or off.

    ``jit_compile=True`` compiles the train and predict steps with XLA (TensorFlow: XLA; JAX: ``jax.jit``,
    which JAX always uses unless told not to; torch: ``torch.compile``). ``False`` runs TensorFlow as a
    plain ``tf.function`` graph, JAX without jit (slow) and torch eagerly. On a CPU XLA is usually slower.

    Args:
        xla: Whether to compile with XLA.
    """
    return {"jit_compile": xla}
