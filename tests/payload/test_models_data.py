"""Models by name and weights, and the data sets: digits, CIFAR-10 from Keras's cache, an image folder, synthetic."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_bench.data import datasets
from keras_bench.data.datasets import load_split, read_cifar_batch, read_digits, synthetic_split
from keras_bench.errors import ParamError
from keras_bench.models.builders import BACKBONE_LAYER, MODEL_BUILDERS, build_model, model_names, resolve_application


def test_application_names_resolve_from_snake_and_camel_case() -> None:
    assert resolve_application("resnet50") == resolve_application("ResNet50") == "ResNet50"
    assert resolve_application("mobilenet_v2") == resolve_application("MobileNetV2") == "MobileNetV2"
    assert resolve_application("efficientnet_b0") == "EfficientNetB0"
    assert {"small_cnn", "resnet50", "mobilenet_v2"} <= set(model_names())


def test_unknown_model_is_a_param_error_naming_the_field_value_and_examples() -> None:
    with pytest.raises(ParamError, match=r"param 'model'.*'resnet5000'.*MobileNetV2"):
        build_model("resnet5000", (32, 32, 3), 10)


def test_application_below_its_minimum_input_size_is_rejected_with_the_size() -> None:
    with pytest.raises(ParamError, match=r"param 'image_size'.*ResNet50.*32x32.*\(16, 16, 3\)"):
        build_model("resnet50", (16, 16, 3), 10)


def test_imagenet_weights_for_one_channel_images_are_rejected_before_any_download() -> None:
    with pytest.raises(ParamError, match=r"param 'weights'.*3-channel.*\(32, 32, 1\)"):
        build_model("mobilenet_v2", (32, 32, 1), 10, weights="imagenet")


def test_missing_weights_file_is_rejected_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.weights.h5"
    with pytest.raises(ParamError, match=r"param 'weights'.*absent\.weights\.h5"):
        build_model("mobilenet_v2", (32, 32, 3), 10, weights=str(missing))


def test_application_classifier_has_a_named_backbone_and_the_requested_classes() -> None:
    model = build_model("MobileNetV2", (32, 32, 3), 7, dropout=0.2)
    assert model.output_shape == (None, 7)
    assert model.get_layer(BACKBONE_LAYER).trainable
    prediction = model.predict_on_batch(np.zeros((2, 32, 32, 3), dtype=np.float32))
    np.testing.assert_allclose(prediction.sum(axis=1), 1.0, rtol=1e-5)


def test_backbone_weights_file_is_loaded_into_the_backbone(tmp_path: Path) -> None:
    source = build_model("mobilenet_v2", (32, 32, 3), 5)
    path = tmp_path / "bb.weights.h5"
    source.get_layer(BACKBONE_LAYER).save_weights(str(path))

    loaded = build_model("mobilenet_v2", (32, 32, 3), 5, weights=str(path))
    fresh = build_model("mobilenet_v2", (32, 32, 3), 5)

    expected = source.get_layer(BACKBONE_LAYER).get_weights()
    got = loaded.get_layer(BACKBONE_LAYER).get_weights()
    assert len(got) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))
    assert not all(
        np.array_equal(a, b) for a, b in zip(expected, fresh.get_layer(BACKBONE_LAYER).get_weights(), strict=True)
    )


def test_frozen_backbone_leaves_only_the_classifier_trainable() -> None:
    model = build_model("mobilenet_v2", (32, 32, 3), 4, freeze_backbone=True)
    assert not model.get_layer(BACKBONE_LAYER).trainable
    assert [tuple(w.shape) for w in model.trainable_weights] == [(1280, 4), (4,)]


def test_small_cnn_keeps_its_smoke_builder_and_rejects_pretrained_weights() -> None:
    assert MODEL_BUILDERS["small_cnn"]((8, 8, 1), 10, 0.25).output_shape == (None, 10)
    assert (
        build_model("small_cnn", (8, 8, 1), 10).count_params()
        == MODEL_BUILDERS["small_cnn"]((8, 8, 1), 10, 0.0).count_params()
    )
    with pytest.raises(ParamError, match=r"param 'weights'"):
        build_model("small_cnn", (8, 8, 1), 10, weights="imagenet")


def test_digits_split_can_be_limited_resized_recoloured_and_cut_to_fewer_classes() -> None:
    split = load_split("digits", image_size=16, channels=3, num_classes=3, limit=40, seed=1)
    assert split.x_train.shape == (40, 16, 16, 3)
    assert len(split.x_test) <= 40
    assert split.num_classes == 3
    assert set(np.unique(split.y_train)) <= {0, 1, 2}
    assert split.x_train.min() >= 0.0 and split.x_train.max() <= 1.0


def test_digits_read_from_scikit_learns_file_are_load_digits_without_importing_scikit_learn() -> None:
    from sklearn.datasets import load_digits

    pixels, labels = read_digits()
    expected = load_digits()
    assert pixels.shape == (1797, 8, 8) and labels.dtype == np.int64
    assert np.array_equal(pixels, expected.images) and np.array_equal(labels, expected.target)
    benchmarks = Path(datasets.__file__).parents[2]
    code = ("import sys; from keras_bench.data.datasets import read_digits; read_digits(); "
            "print('sklearn' in sys.modules)")
    process = subprocess.run([sys.executable, "-c", code], cwd=benchmarks, capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "False"


def test_digits_come_from_load_digits_when_the_file_is_not_where_scikit_learn_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from_file = read_digits()
    monkeypatch.setattr(datasets, "DIGITS_CSV", ("datasets", "data", "no-such-file.csv.gz"))
    from_sklearn = read_digits()
    assert all(np.array_equal(a, b) for a, b in zip(from_file, from_sklearn, strict=True))
    assert from_sklearn[0].dtype == np.float64 and from_sklearn[1].dtype == np.int64


def test_more_classes_than_the_data_set_has_is_a_param_error() -> None:
    with pytest.raises(ParamError, match=r"param 'num_classes'.*10 classes.*received 12"):
        load_split("digits", num_classes=12)


def test_unknown_data_set_is_a_param_error_listing_the_choices() -> None:
    with pytest.raises(ParamError, match=r"param 'data'.*'mnist'.*cifar10.*image_dir:"):
        load_split("mnist")


def test_synthetic_split_is_the_same_for_the_same_seed() -> None:
    first = load_split("synthetic", image_size=8, num_classes=4, limit=12, seed=3)
    again = synthetic_split((8, 8, 3), 4, 12, 3, seed=3)
    assert first.x_train.shape == (12, 8, 8, 3) and first.x_test.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_test, again.y_test)
    assert first.y_train.max() < 4


def _write_cifar_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    # The CIFAR-10 python format: a pickled dict with bytes keys, rows of 3072 bytes in channel-major order.
    # The real files are Python 2 pickles; protocol 3 likewise stores bytes as bytes (protocol 2 from Python 3
    # would route them through _codecs.encode, which the restricted unpickler refuses).
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    with path.open("wb") as stream:
        pickle.dump({b"batch_label": b"fake", b"labels": labels, b"data": rows, b"filenames": []}, stream, protocol=3)


def test_cifar10_is_read_from_keras_cache_in_its_pickle_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "datasets" / "cifar-10-batches-py"
    cache.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for index in range(1, 6):
        images = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
        batches[index] = images
        _write_cifar_batch(cache / f"data_batch_{index}", images, [index, index + 1])
    test_images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    _write_cifar_batch(cache / "test_batch", test_images, [7, 8, 9])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    split = load_split("cifar10")

    assert split.x_train.shape == (10, 32, 32, 3) and split.x_test.shape == (3, 32, 32, 3)
    assert split.y_train.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    np.testing.assert_allclose(split.x_train[2], batches[2][0] / 255.0, atol=1e-6)
    np.testing.assert_allclose(split.x_test, test_images / 255.0, atol=1e-6)
    images, labels = read_cifar_batch(cache / "test_batch")
    np.testing.assert_array_equal(images, test_images)


def test_image_directory_loads_one_class_per_subfolder(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    root = tmp_path / "images"
    for label, (name, shade) in enumerate((("cat", 40), ("dog", 200))):
        (root / name).mkdir(parents=True)
        for index in range(5):
            pixels = np.full((10, 12, 3), shade + index, dtype=np.uint8)
            tf.io.write_file(str(root / name / f"{label}-{index}.png"), tf.io.encode_png(pixels))

    split = load_split(f"image_dir:{root}", image_size=8, seed=0, test_fraction=0.2)

    assert split.num_classes == 2
    assert split.x_train.shape == (8, 8, 8, 3) and split.x_test.shape == (2, 8, 8, 3)
    images = np.concatenate([split.x_train, split.x_test])
    labels = np.concatenate([split.y_train, split.y_test])
    # cat (label 0) images are dark, dog (label 1) images are bright: labels follow the folders.
    assert np.all(images[labels == 0].max(axis=(1, 2, 3)) < 0.25)
    assert np.all(images[labels == 1].min(axis=(1, 2, 3)) > 0.75)


def test_missing_image_directory_is_a_param_error(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match=r"param 'data'.*image_dir:.*nowhere"):
        load_split(f"image_dir:{tmp_path / 'nowhere'}")
