"""The transfer suite: pretrained (frozen, then fine-tuned) against scratch, with a weights file the test writes.

No download: the "pretrained" backbone weights are a MobileNet backbone the test saves itself, and the data
is digits upscaled to 32x32x3. MobileNet (v1) at 32x32, its smallest input, is the cheapest keras.applications
backbone with BatchNormalization layers (87 layers against MobileNetV2's 155): the transfer path does not depend
on the architecture, and tracing the training step, once per phase, is most of the run's time.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keras_bench.errors import ParamError
from keras_bench.suites import SUITES
from keras_bench.training.checkpoint import WORKDIR_ENV

# Its module-scoped payload runs are shared by its tests: one worker (make test's --dist loadgroup) runs them once.
pytestmark = pytest.mark.xdist_group("transfer_suite")

PAYLOAD_TIMEOUT_S = 240
IMAGE_SHAPE = (32, 32, 3)
MODEL = "mobilenet"  # keras.applications.MobileNet
FEATURES = 1024  # MobileNet's pooled features


@pytest.fixture(scope="module")
def backbone_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    path = tmp_path_factory.mktemp("weights") / "mobilenet_backbone.weights.h5"
    backbone = keras.applications.MobileNet(input_shape=IMAGE_SHAPE, include_top=False, weights=None, pooling="avg")
    backbone.save_weights(str(path))
    return path


def _transfer_params(weights: Path, **overrides: object) -> dict[str, object]:
    return {
        "model": MODEL,
        "data": "digits",
        "image_size": 32,
        "channels": 3,
        "limit": 64,
        "weights": str(weights),
        "frozen_epochs": 1,
        "fine_tune_epochs": 1,
        "batch_size": 32,
        "warmup_steps": 1,
        "tensorboard": False,
        **overrides,
    }


def _run_transfer(
    directory: Path,
    params: dict[str, object],
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    suite = directory / "suite.json"
    suite.write_text(json.dumps({"schema_version": 1, "suite": "transfer", "run_id": "r-tl", "params": params}))
    out = directory / "results.json"
    process = subprocess.run(
        payload_argv(suite, out),
        env={**payload_env, WORKDIR_ENV: str(directory)},
        capture_output=True,
        text=True,
        timeout=PAYLOAD_TIMEOUT_S,
        check=False,
    )
    return process, json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def transfer_document(
    tmp_path_factory: pytest.TempPathFactory,
    backbone_weights: Path,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("transfer")
    process, document = _run_transfer(directory, _transfer_params(backbone_weights), payload_env, payload_argv)
    assert process.returncode == 0, process.stderr
    return document


def _phases(document: dict[str, Any], metric: str) -> dict[str, dict[str, Any]]:
    rows = [s for s in document["samples"] if (s["benchmark"], s["metric"]) == ("transfer", metric)]
    assert len(rows) == len({row["metadata"]["phase"] for row in rows}), f"one {metric} per phase"
    return {row["metadata"]["phase"]: row for row in rows}


@pytest.mark.slow
def test_transfer_document_validates_against_the_schema(
    transfer_document: dict[str, Any], schema_validator: Any
) -> None:
    assert list(schema_validator.iter_errors(transfer_document)) == []
    assert transfer_document["errors"] == []


@pytest.mark.slow
def test_each_phase_records_accuracy_loss_seconds_and_images_per_sec(transfer_document: dict[str, Any]) -> None:
    for metric in ("accuracy", "loss", "seconds", "images_per_sec"):
        assert set(_phases(transfer_document, metric)) == {"frozen", "fine_tune", "scratch"}
    assert all(row["value"] > 0 for row in _phases(transfer_document, "images_per_sec").values())
    assert all(0 <= row["value"] <= 1 for row in _phases(transfer_document, "accuracy").values())
    # Every epoch of a phase is a repeat of its images/s: the figure is the median, with the epochs' spread.
    for phase, figure in _phases(transfer_document, "images_per_sec").items():
        repeats = [s["value"] for s in transfer_document["samples"] if s["benchmark"] == "transfer"
                   and s["metric"] == "images_per_sec_repeat" and s["metadata"]["phase"] == phase]
        assert len(repeats) == figure["metadata"]["repeats_timed"] == figure["metadata"]["epochs"], phase
        assert min(repeats) <= figure["value"] <= max(repeats)
        assert _phases(transfer_document, "images_per_sec_max")[phase]["value"] == max(repeats)


@pytest.mark.slow
def test_pretrained_phases_use_the_weights_file_and_scratch_the_same_total_epochs(
    transfer_document: dict[str, Any], backbone_weights: Path
) -> None:
    rows = _phases(transfer_document, "accuracy")
    assert rows["frozen"]["metadata"]["weights"] == str(backbone_weights)
    assert rows["fine_tune"]["metadata"]["weights"] == str(backbone_weights)
    assert rows["scratch"]["metadata"]["weights"] == "none"
    assert (rows["frozen"]["metadata"]["epochs"], rows["fine_tune"]["metadata"]["epochs"]) == (1, 1)
    assert rows["scratch"]["metadata"]["epochs"] == rows["fine_tune"]["metadata"]["total_epochs"] == 2


@pytest.mark.slow
def test_frozen_phase_trains_only_the_head(transfer_document: dict[str, Any]) -> None:
    rows = _phases(transfer_document, "accuracy")
    head = FEATURES * 10 + 10  # MobileNet's 1024 pooled features -> 10 classes
    assert rows["frozen"]["metadata"]["trainable_parameters"] == head
    fine_tune = rows["fine_tune"]["metadata"]["trainable_parameters"]
    # Fine-tuning trains the whole backbone but its BatchNormalization scales and offsets, which scratch trains.
    assert 100 * head < fine_tune < rows["scratch"]["metadata"]["trainable_parameters"]


@pytest.mark.slow
def test_a_missing_weights_file_is_a_bad_param(
    tmp_path: Path, payload_env: dict[str, str], payload_argv: Callable[[Path, Path], list[str]]
) -> None:
    missing = tmp_path / "nowhere.weights.h5"
    process, document = _run_transfer(tmp_path, _transfer_params(missing), payload_env, payload_argv)
    assert process.returncode == 2
    assert "param 'weights': expected" in process.stderr and str(missing) in process.stderr
    assert document["samples"] == []
    assert "imported keras" not in process.stdout + process.stderr  # refused before the backend's start-up


@pytest.mark.slow
def test_fine_tuning_keeps_pretrained_batchnorm_statistics_while_scratch_updates_them() -> None:
    from keras_bench.models.builders import BACKBONE_LAYER, build_model
    from keras_bench.suites.transfer import unfreeze_backbone

    images = np.random.default_rng(0).random((4, *IMAGE_SHAPE), dtype=np.float32)

    def first_batchnorm(model: Any) -> Any:
        return next(
            layer for layer in model.get_layer(BACKBONE_LAYER).layers if "BatchNormalization" in type(layer).__name__
        )

    pretrained = build_model(MODEL, IMAGE_SHAPE, 10, freeze_backbone=True)
    unfreeze_backbone(pretrained, 0)
    statistics = first_batchnorm(pretrained).moving_mean.numpy().copy()
    pretrained(images, training=True)
    assert np.array_equal(first_batchnorm(pretrained).moving_mean.numpy(), statistics)

    scratch = build_model(MODEL, IMAGE_SHAPE, 10)
    statistics = first_batchnorm(scratch).moving_mean.numpy().copy()
    scratch(images, training=True)
    assert not np.array_equal(first_batchnorm(scratch).moving_mean.numpy(), statistics)


@pytest.mark.slow
def test_fine_tune_layers_unfreezes_only_the_top_of_the_backbone() -> None:
    from keras_bench.models.builders import BACKBONE_LAYER, build_model
    from keras_bench.suites.transfer import unfreeze_backbone

    model = build_model(MODEL, IMAGE_SHAPE, 10, freeze_backbone=True)
    layers = model.get_layer(BACKBONE_LAYER).layers
    batchnorm = ["BatchNormalization" in type(layer).__name__ for layer in layers]
    assert unfreeze_backbone(model, 10) == 10
    top = [len(layers) - index <= 10 for index in range(len(layers))]
    assert [layer.trainable for layer in layers] == [t and not b for t, b in zip(top, batchnorm, strict=True)]
    assert unfreeze_backbone(model, 0) == len(layers)
    assert [layer.trainable for layer in layers] == [not b for b in batchnorm]
    with pytest.raises(ParamError, match=f"^param 'fine_tune_layers': the backbone has {len(layers)} layers"):
        unfreeze_backbone(model, len(layers) + 1)


def test_transfer_yaml_params_equal_the_payload_defaults(benchmarks_dir: Path) -> None:
    yaml = pytest.importorskip("yaml")
    declared = yaml.safe_load((benchmarks_dir / "suites" / "transfer.yaml").read_text(encoding="utf-8"))
    assert declared["name"] == "transfer"
    assert declared["params"] == {spec.name: spec.default for spec in SUITES["transfer"].params}
