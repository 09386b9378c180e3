"""Model builders by name: the small CNN and any ``keras.applications`` model as a classifier.

Keras is imported inside each builder, never at module import. Every model takes images (N, H, W, C) with
values in [0, 1] and ends in a float32 softmax, so it also trains under a mixed-precision dtype policy. The
ImageNet backbones are not given their family's ``preprocess_input`` step: the benchmarks compare speed and
scratch-versus-pretrained under the same input, and a caller that wants it applies it to the data.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keras_bench.errors import ParamError

BACKBONE_LAYER = "backbone"  # name of the keras.applications part, for freezing: model.get_layer(BACKBONE_LAYER)
SMALL_CNN = "small_cnn"
WEIGHT_CHOICES_TEXT = 'none, "imagenet" or a path to a backbone weights file'
# Smallest input side each application accepts without its classification top (keras.applications checks).
MIN_INPUT_SIDE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
DEFAULT_MIN_INPUT_SIDE = 32
APPLICATION_EXAMPLES = ("ResNet50", "MobileNetV2", "EfficientNetB0", "DenseNet121")


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
    import keras  # lazy: suites import this module, and --check must not load Keras

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
            # float32 output: a softmax in float16 loses precision under mixed precision.
            keras.layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name=SMALL_CNN,
    )


MODEL_BUILDERS: dict[str, Callable[[tuple[int, ...], int, float], Any]] = {
    SMALL_CNN: build_small_cnn,
}


def model_names() -> list[str]:
    """Returns the model names the suites document; any ``keras.applications`` name also works.

    Returns:
        ``small_cnn``, ``resnet50`` and ``mobilenet_v2``. ``build_model`` also accepts every model function
        in ``keras.applications`` by name, e.g. ``EfficientNetB0`` or ``efficientnet_b0``.
    """
    return [SMALL_CNN, "resnet50", "mobilenet_v2"]


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def application_names() -> list[str]:
    """Returns the model functions ``keras.applications`` offers in this Keras version, e.g. ``ResNet50``."""
    import keras  # lazy: suites import this module, and --check must not load Keras

    return sorted(
        attribute
        for attribute in dir(keras.applications)
        if attribute[:1].isupper() and callable(getattr(keras.applications, attribute))
    )


def resolve_application(name: str) -> str:
    """Finds the ``keras.applications`` function a model name means, ignoring case, ``_`` and ``-``.

    Args:
        name: ``resnet50``, ``ResNet50``, ``mobilenet_v2``, ``efficientnet_b0``...

    Returns:
        The attribute name in ``keras.applications``, e.g. ``MobileNetV2``.

    Raises:
        ParamError: When no application has that name; the message lists examples.
    """
    wanted = _normalise(name)
    for attribute in application_names():
        if _normalise(attribute) == wanted:
            return attribute
    raise ParamError(
        f"param 'model': unknown model, received {name!r}; expected {SMALL_CNN} or a keras.applications "
        f"model name such as {', '.join(APPLICATION_EXAMPLES)} (also snake_case: resnet50, mobilenet_v2)"
    )


def _check_weights(weights: str | None, input_shape: tuple[int, int, int], application: str) -> str | None:
    """Returns the ``weights=`` value for keras.applications, or raises ParamError naming the field."""
    if weights is None or weights.lower() == "none":
        return None
    if weights == "imagenet":
        if input_shape[-1] != 3:
            raise ParamError(
                f"param 'weights': imagenet weights need 3-channel images, received input_shape={input_shape} "
                f"for model {application}"
            )
        return weights
    check_weights_file(weights)
    return weights


def check_weights_file(weights: str | None) -> None:
    """Raises ParamError naming the field when ``weights`` is a path with no file there; suites call it before
    they import Keras, so a wrong path fails in a second, not after the backend's start-up."""
    if weights is None or weights.lower() == "none" or weights == "imagenet":
        return
    if not Path(weights).is_file():
        raise ParamError(f"param 'weights': expected {WEIGHT_CHOICES_TEXT}, received {weights!r} (no such file)")


def _build_application(
    application: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    weights: str | None,
    dropout: float,
    freeze_backbone: bool,
) -> Any:
    import keras  # lazy: suites import this module, and --check must not load Keras

    constructor = getattr(keras.applications, application)
    arguments: dict[str, Any] = {
        "include_top": False,
        "weights": _check_weights(weights, input_shape, application),
        "input_shape": input_shape,
        "pooling": "avg",
    }
    if "name" in inspect.signature(constructor).parameters:
        arguments["name"] = BACKBONE_LAYER
    try:
        backbone = constructor(**arguments)
    except ValueError as exc:
        raise ParamError(
            f"param 'model': keras.applications.{application} rejected input_shape={input_shape}, "
            f"weights={weights!r}: {exc}"
        ) from exc
    if backbone.name != BACKBONE_LAYER:
        backbone.name = BACKBONE_LAYER
    backbone.trainable = not freeze_backbone
    inputs = keras.Input(shape=input_shape)
    # A frozen backbone runs in inference mode (training=False), as the Keras transfer-learning guide advises.
    # In Keras 3.15 that call argument does NOT keep BatchNormalization in inference mode once the backbone is
    # unfrozen (fit's training=True wins, keras-team/keras#20285): fine-tuning code must keep the backbone's
    # BatchNormalization layers at trainable=False, as suites/transfer.py does.
    features = backbone(inputs, training=False if freeze_backbone else None)
    if dropout > 0:
        features = keras.layers.Dropout(dropout)(features)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(features)
    return keras.Model(inputs, outputs, name=_normalise(application))


def check_model(name: str, input_shape: tuple[int, int, int], weights: str | None = None) -> str:
    """Checks that a model can be built for an input shape and weights, without building it.

    Suites call this for every model of a grid before measuring anything, so a bad name fails the run at
    once rather than after the first hours.

    Args:
        name: As for ``build_model``.
        input_shape: One image, (H, W, C).
        weights: As for ``build_model``.

    Returns:
        ``small_cnn`` or the ``keras.applications`` attribute the name means, e.g. ``MobileNetV2``.

    Raises:
        ParamError: As ``build_model`` would for these arguments.
    """
    if len(input_shape) != 3:
        raise ParamError(f"param 'image_size': expected an (H, W, C) image shape, received {input_shape}")
    if name == SMALL_CNN:
        if weights is not None and weights.lower() != "none":
            raise ParamError(f"param 'weights': {SMALL_CNN} has no pretrained weights, received {weights!r}")
        return SMALL_CNN
    application = resolve_application(name)
    minimum = MIN_INPUT_SIDE.get(application, DEFAULT_MIN_INPUT_SIDE)
    if min(input_shape[0], input_shape[1]) < minimum:
        raise ParamError(
            f"param 'image_size': {application} needs images of at least {minimum}x{minimum}, "
            f"received input_shape={input_shape}"
        )
    _check_weights(weights, input_shape, application)
    return application


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    weights: str | None = None,
    dropout: float = 0.0,
    freeze_backbone: bool = False,
) -> Any:
    """Builds an uncompiled classifier by name.

    ``small_cnn`` is the payload's own CNN (random initialisation only). Any other name is looked up in
    ``keras.applications`` (``resnet50``, ``mobilenet_v2``, ``EfficientNetB0``...) and becomes
    backbone (``include_top=False, pooling="avg"``, layer name ``"backbone"``) + Dropout + Dense softmax.

    Args:
        name: The model name.
        input_shape: One image, (H, W, C).
        num_classes: Width of the softmax output.
        weights: None or ``"none"`` for random initialisation, ``"imagenet"`` (downloaded by Keras), or a path
            to a weights file of the backbone alone (``model.get_layer("backbone").save_weights(path)``).
        dropout: Dropout rate before the classifier (and inside the small CNN).
        freeze_backbone: Sets the backbone untrainable, for training the classifier alone.

    Returns:
        A ``keras.Model``.

    Raises:
        ParamError: For an unknown name, an input smaller than the model accepts, ImageNet weights with other
            than 3 channels, a weights path that does not exist, or weights on the small CNN.
    """
    resolved = check_model(name, input_shape, weights)
    if resolved == SMALL_CNN:
        return build_small_cnn(input_shape, num_classes, dropout)
    return _build_application(resolved, input_shape, num_classes, weights, dropout, freeze_backbone)
