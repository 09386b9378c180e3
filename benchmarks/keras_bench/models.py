"""Model builders by name. Keras is imported inside each builder, never at module import."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def build_small_cnn(input_shape: tuple[int, ...], num_classes: int, dropout: float) -> Any:
    """Builds Conv32-Conv64-MaxPool-Dropout-Flatten-Dense128-Dropout-Dense(softmax), uncompiled.

    Uses only ``keras.*`` layers, so it runs on any Keras backend.

    Args:
        input_shape: One image, (H, W, C).
        num_classes: Width of the softmax output.
        dropout: Rate of both dropout layers.

    Returns:
        A ``keras.Sequential`` model.
    """
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Dropout(dropout),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(num_classes, activation="softmax"),
        ],
        name="small_cnn",
    )


MODEL_BUILDERS: dict[str, Callable[[tuple[int, ...], int, float], Any]] = {
    "small_cnn": build_small_cnn,
}
