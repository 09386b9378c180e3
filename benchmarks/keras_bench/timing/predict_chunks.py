"""A chunk of predictions as one compiled loop on TensorFlow, so a chunk costs one trace of the model, not K.

Keras's own TensorFlow predict function for ``steps_per_execution`` K unrolls K calls of the model in one graph
(and concatenates as it goes): tracing and optimising that graph grows with K (the first call for MobileNetV2 at K
10 took ~5x as long as with this loop on this VM, ~100 s against ~21 s under load). Training has no such cost: its K
steps are a ``tf.while_loop``. This module gives predict the same shape: one ``tf.function`` whose while loop runs
``predict_step`` once per batch of the chunk, one batch after another, and writes each batch's predictions to a
``TensorArray``, returning them concatenated as Keras does. On JAX (a Python loop over one jitted step) and torch
(K must be 1) Keras's own function stays.
"""

from __future__ import annotations

from typing import Any


def use_looped_predict(model: Any) -> bool:
    """Installs the looped chunk as ``model.predict_function`` on TensorFlow when ``steps_per_execution`` > 1 and
    the model has no predict function yet (``compile`` clears it; one already made or installed is kept).

    Args:
        model: A compiled Keras model without a distribution strategy, predicting one tensor per batch.

    Returns:
        True when installed; False where the model's predict function stays (another backend, chunks of one, a
        model whose predictions are not one tensor, a predict function already there).
    """
    import keras  # lazy: suites import this module, and --check must not load Keras

    if keras.backend.backend() != "tensorflow" or int(getattr(model, "steps_per_execution", 1) or 1) <= 1:
        return False
    if len(model.outputs or ()) != 1 or getattr(model, "predict_function", None) is not None:
        return False
    import tensorflow as tf  # only reached on the TensorFlow backend

    def predict_chunk(data: list[Any]) -> Any:
        # Each element of ``data`` is one batch as the iterator gave it; stack them to index them in the loop.
        stacked = tf.nest.map_structure(lambda *batches: tf.stack(batches), *data)
        count = len(data)
        predictions = tf.TensorArray(model.outputs[0].dtype, size=count, infer_shape=True)

        def body(index: Any, written: Any) -> tuple[Any, Any]:
            batch = tf.nest.map_structure(lambda batches: batches[index], stacked)
            return index + 1, written.write(index, model.predict_step(batch))

        # One batch after another, as a plain loop runs them: the batches of a chunk do not depend on each other, and
        # a loop that overlapped them would time K concurrent batches, not batched inference.
        _, predictions = tf.while_loop(lambda index, _: index < count, body, (tf.constant(0), predictions),
                                       parallel_iterations=1)
        return predictions.concat()

    model.predict_function = tf.function(predict_chunk, reduce_retracing=True, jit_compile=bool(model.jit_compile))
    return True
