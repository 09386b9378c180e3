"""The deploy suite: pruning schedule and masks, Keras int8, TFLite files in LiteRT, and the suite end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from keras_bench.deploy.measure import file_size, time_latency, time_throughput
from keras_bench.deploy.pruning import (
    PolynomialSchedule,
    count_zeros,
    fine_tune_schedule,
    magnitude_mask,
    polynomial_sparsity,
)
from keras_bench.suites.deploy import DEPLOY
from keras_bench.suites.deploy_variants import pruned_variant

pytest.importorskip("tensorflow")
litert = pytest.importorskip("ai_edge_litert.interpreter")

# Its module-scoped payload runs are shared by its tests: one worker (make test's --dist loadgroup) runs them once.
pytestmark = pytest.mark.xdist_group("deploy_suite")

DEPLOY_TIMEOUT_S = 300
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
METRICS = {"model_bytes", "model_bytes_gzip", "latency_ms_p50", "latency_ms_p90", "images_per_sec", "accuracy",
           "accuracy_delta", "images_per_sec_min", "images_per_sec_max", "images_per_sec_cv",
           "images_per_sec_repeat"}  # fmt: skip
# The orchestrator groups rows by these metadata keys: a deploy sample carrying one would split its variant's row.
GROUPING_KEYS = {"weights", "phase", "pipeline", "precision", "xla", "batch_size", "image_size", "optimizer",
                 "learning_rate", "momentum", "dropout", "strategy", "replicas", "workers", "worker_index",
                 "per_replica_batch", "backend"}  # fmt: skip
TINY = {
    "limit": 240,
    "epochs": 2,
    "fine_tune_epochs": 1,
    "sparsities": [0.5],
    "prune_then_int8": [0.5],
    "latency_runs": 5,
    "throughput_batch": 16,
    "representative_samples": 8,
    "keep_models": True,
}
TINY_VARIANTS = ["float32", "dynamic_range", "float16", "int8", "keras_float32", "keras_int8", "pruned_50",
                 "pruned_50_int8"]  # fmt: skip


# --- The polynomial schedule and the magnitude masks (pure functions). ---


@pytest.mark.parametrize(
    ("step", "expected"),
    [(-5, 0.0), (0, 0.0), (25, 0.43359375), (50, 0.65625), (75, 0.73828125), (100, 0.75), (150, 0.75)],
)
def test_polynomial_sparsity_rises_as_a_cubic_from_the_initial_to_the_final_sparsity(
    step: int, expected: float
) -> None:
    # s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^3, with t clipped to [t0, t1].
    assert polynomial_sparsity(step, 0.0, 0.75, 0, 100) == pytest.approx(expected, abs=1e-12)


def test_polynomial_sparsity_with_a_non_zero_start_and_a_late_begin_step() -> None:
    assert polynomial_sparsity(10, 0.2, 0.8, 10, 30) == pytest.approx(0.2)
    assert polynomial_sparsity(20, 0.2, 0.8, 10, 30) == pytest.approx(0.725)
    assert polynomial_sparsity(30, 0.2, 0.8, 10, 30) == pytest.approx(0.8)
    assert polynomial_sparsity(16, 0.2, 0.8, 10, 30, power=1) == pytest.approx(0.38)


def test_the_masks_are_updated_every_frequency_steps_and_at_the_end_step() -> None:
    schedule = PolynomialSchedule(0.0, 0.9, begin_step=2, end_step=13, frequency=4)
    assert [step for step in range(20) if schedule.updates_at(step)] == [2, 6, 10, 13]
    assert schedule.sparsity_at(13) == pytest.approx(0.9) and schedule.sparsity_at(2) == 0.0


def test_the_suites_schedule_ramps_over_the_first_sixty_percent_of_fine_tuning_with_ten_updates() -> None:
    schedule = fine_tune_schedule(0.75, total_steps=270)
    assert (schedule.begin_step, schedule.end_step, schedule.frequency, schedule.power) == (0, 162, 16, 3)
    assert schedule.sparsity_at(270) == 0.75
    assert fine_tune_schedule(0.5, total_steps=1).end_step == 1  # a one-step fine-tune still reaches the target


@pytest.mark.parametrize(
    "arguments",
    [dict(initial_sparsity=0.5, final_sparsity=0.4), dict(final_sparsity=1.0), dict(begin_step=5, end_step=5),
     dict(frequency=0)],  # fmt: skip
)
def test_an_impossible_schedule_is_refused(arguments: dict[str, Any]) -> None:
    settings = {"initial_sparsity": 0.0, "final_sparsity": 0.5, "begin_step": 0, "end_step": 10, **arguments}
    with pytest.raises(ValueError, match="expected"):
        PolynomialSchedule(**settings)


def test_magnitude_mask_zeroes_exactly_the_smallest_weights() -> None:
    weights = np.array([[0.5, -0.1, 0.05], [-2.0, 0.3, -0.01]], dtype=np.float32)
    mask = magnitude_mask(weights, 0.5)
    assert mask.shape == weights.shape and mask.dtype == np.float32
    np.testing.assert_array_equal(mask, [[1, 0, 0], [1, 1, 0]])
    assert magnitude_mask(weights, 0.0).all()
    assert not magnitude_mask(weights, 1.0).any()


def test_a_rising_sparsity_keeps_the_weights_already_pruned() -> None:
    weights = np.random.default_rng(0).normal(size=(40, 30)).astype(np.float32)
    first = magnitude_mask(weights, 0.3)
    second = magnitude_mask(weights * first, 0.6)
    assert np.all(second[first == 0] == 0)
    assert count_zeros([weights * second]).fraction == pytest.approx(0.6)


def test_count_zeros_counts_exact_zeros_over_every_array() -> None:
    count = count_zeros([np.array([0.0, 1e-9, -0.0]), np.zeros((2, 3)), np.ones(5)])
    assert (count.zeros, count.total) == (8, 14)
    assert count.fraction == pytest.approx(8 / 14)
    assert count_zeros([]).fraction == 0.0


# --- Measuring, with a fake clock. ---


class _Clock:
    """A clock that moves only when a prediction runs: each call to ``predict`` takes ``step`` seconds."""

    def __init__(self, steps: list[float]) -> None:
        self.now = 0.0
        self._steps = iter(steps)

    def __call__(self) -> float:
        return self.now

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.now += next(self._steps)
        return np.zeros((len(images), 3))


def test_latency_percentiles_come_from_the_timed_runs_only() -> None:
    clock = _Clock([5.0] * 2 + [0.001 * (i + 1) for i in range(10)])  # two slow warm-up calls, then 1..10 ms
    latency = time_latency(clock.predict, np.zeros((3, 2, 2, 1)), runs=10, warmup_runs=2, clock=clock)
    assert latency.p50_ms == pytest.approx(5.5) and latency.p90_ms == pytest.approx(9.1)
    assert (latency.runs, latency.warmup_runs) == (10, 2)


def test_a_throughput_pass_repeats_the_images_until_it_lasts_long_enough() -> None:
    batch_s = 1 / 64  # exact in binary, so the sizing arithmetic is too
    clock = _Clock([1.0] * 4 + [batch_s] * 1000)  # a slow warm-up pass (tracing), then 1/64 s per batch
    images = np.zeros((70, 2, 2, 1))  # 4 whole batches of 16; 6 images left out
    throughput = time_throughput(clock.predict, images, batch=16, passes=3, min_pass_seconds=0.25, clock=clock)
    # The sizing pass takes 4/64 s, so a timed pass goes 4 times over the 64 images: 256 images in 0.25 s.
    assert throughput.images == 256 and throughput.batch == 16 and throughput.passes == 3
    assert throughput.images_per_sec == pytest.approx(1024.0)


def test_file_size_is_the_bytes_and_their_gzip(tmp_path: Path) -> None:
    path = tmp_path / "zeros.bin"
    path.write_bytes(bytes(100_000))
    size = file_size(path)
    assert size.bytes == 100_000 and 0 < size.gzip_bytes < 1_000


# --- Keras: masks through fine-tuning, Keras int8. ---


def _small_cnn_and_data() -> tuple[Any, np.ndarray, np.ndarray]:
    from keras_bench.models.builders import build_small_cnn

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((96, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 4, size=96)
    return build_small_cnn((8, 8, 1), 4, 0.1), x, y


def test_pruned_weights_stay_zero_through_fine_tuning_and_the_others_keep_learning() -> None:
    from keras_bench.deploy.keras_variants import MagnitudePruning, kernel_values, prunable_kernels

    model, x, y = _small_cnn_and_data()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    kernels = prunable_kernels(model)
    assert len(kernels) == 4  # two Conv2D and two Dense kernels; no bias, no other layer
    pruning = MagnitudePruning(kernels, PolynomialSchedule(0.0, 0.8, begin_step=0, end_step=6, frequency=2))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[pruning])  # 6 steps: the sparsity reaches 0.8
    pruned = kernel_values(kernels)
    assert pruning.step == 6 and count_zeros(pruned).fraction == pytest.approx(0.8, abs=1e-3)

    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[pruning])  # past the end step: mask fixed
    tuned = kernel_values(kernels)
    for before, after, mask in zip(pruned, tuned, pruning.masks, strict=True):
        assert np.all(after[before == 0] == 0)
        assert np.all(after[mask == 0] == 0)
        assert not np.array_equal(before[before != 0], after[before != 0])

    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # without the callback the optimizer regrows them
    assert count_zeros(kernel_values(kernels)).fraction < 0.5


def test_keras_int8_quantises_the_dense_layers_quietly_and_leaves_the_model_as_it_was() -> None:
    from keras_bench.deploy.keras_variants import quantize_keras_int8

    model, x, _ = _small_cnn_and_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantized, layers = quantize_keras_int8(model)
    assert [str(w.message) for w in caught if "quantize" in str(w.message)] == []
    assert layers == tuple(layer.name for layer in model.layers if isinstance(layer, keras.layers.Dense))
    assert len(layers) == 2
    assert all(layer.quantization_mode is None for layer in model.layers)
    assert quantized.predict_on_batch(x[:5]).shape == (5, 4)


def test_keras_int8_reports_no_layer_for_a_model_without_dense_layers() -> None:
    from keras_bench.deploy.keras_variants import quantize_keras_int8

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D()])
    _, layers = quantize_keras_int8(model)
    assert layers == ()


# --- The suite end to end, every variant at tiny sizes. ---


def _run(
    directory: Path, env: dict[str, str], argv: Callable[[Path, Path], list[str]], params: dict[str, object]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    suite = directory / "suite.json"
    suite.write_text(json.dumps({"schema_version": 1, "suite": "deploy", "run_id": "r-deploy", "params": params}))
    out = directory / "results.json"
    process = subprocess.run(
        argv(suite, out), env=env, cwd=directory, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT_S, check=False
    )
    document = json.loads(out.read_text(encoding="utf-8")) if out.exists() else None
    return process, document


def _rows(document: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """variant -> metric -> sample, for the deploy samples."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for sample in document["samples"]:
        if sample["benchmark"] == "deploy":
            rows.setdefault(sample["metadata"]["variant"], {})[sample["metric"]] = sample
    return rows


@pytest.fixture(scope="module")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> tuple[Path, subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """One tiny run of every variant, its files kept, shared by the tests that read it."""
    directory = tmp_path_factory.mktemp("deploy-tiny")
    process, document = _run(directory, payload_env, payload_argv, TINY)
    return directory, process, document


@pytest.mark.slow
def test_every_variant_is_measured_with_the_same_rows_and_a_valid_document(
    tiny_run: tuple[Path, subprocess.CompletedProcess[str], dict[str, Any] | None], schema_validator: Any
) -> None:
    _, process, document = tiny_run
    assert process.returncode == 0, process.stderr
    assert document is not None and document["errors"] == []
    assert [e.message for e in schema_validator.iter_errors(document)] == []
    rows = _rows(document)
    assert list(rows) == TINY_VARIANTS
    for variant, metrics in rows.items():
        expected = METRICS | ({"sparsity"} if variant.startswith("pruned_") else set())
        assert set(metrics) == expected, variant
        identity = {(s["metadata"]["format"], s["metadata"]["model"], s["metadata"]["data"]) for s in metrics.values()}
        assert identity == {("keras" if variant.startswith("keras_") else "tflite", "small_cnn", "digits")}
        assert all(not GROUPING_KEYS & set(s["metadata"]) for s in metrics.values()), variant
        assert all(metrics[m]["value"] > 0 for m in ("model_bytes", "latency_ms_p50", "images_per_sec")), variant
        assert metrics["latency_ms_p90"]["value"] >= metrics["latency_ms_p50"]["value"]
        assert metrics["latency_ms_p50"]["metadata"]["latency_runs"] == 5
        assert metrics["images_per_sec"]["metadata"]["throughput_batch"] == 16
        assert metrics["images_per_sec"]["metadata"]["repeats_timed"] == metrics["images_per_sec"]["metadata"][
            "throughput_passes"]
        assert metrics["images_per_sec_min"]["value"] <= metrics["images_per_sec"]["value"] <= metrics[
            "images_per_sec_max"]["value"]
        assert metrics["accuracy_delta"]["unit"] == "points"
        baseline = rows["float32"]["accuracy"]["value"]
        assert metrics["accuracy_delta"]["value"] == pytest.approx((metrics["accuracy"]["value"] - baseline) * 100)
    assert rows["float32"]["accuracy_delta"]["value"] == 0.0
    assert rows["int8"]["model_bytes"]["metadata"]["representative_images"] == 8
    assert rows["keras_int8"]["model_bytes"]["metadata"]["quantized_layer_names"] == "dense,dense_1"
    trained = [s for s in document["samples"] if s["benchmark"] == "train" and s["metric"] == "accuracy"]
    assert len(trained) == 1 and trained[0]["metadata"]["test_images"] == 240


@pytest.mark.slow
def test_each_tflite_file_loads_in_the_litert_interpreter_and_predicts_the_classes(
    tiny_run: tuple[Path, subprocess.CompletedProcess[str], dict[str, Any] | None],
) -> None:
    directory, process, _ = tiny_run
    assert process.returncode == 0, process.stderr
    models = directory / "deploy-models"
    files = sorted(path.name for path in models.glob("*.tflite"))
    assert files == sorted(f"{v}.tflite" for v in TINY_VARIANTS if not v.startswith("keras_"))
    images = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    for name in files:
        interpreter = litert.Interpreter(model_path=str(models / name))
        inputs = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inputs["index"], [3, 8, 8, 1])
        interpreter.allocate_tensors()
        inputs = interpreter.get_input_details()[0]
        full_integer = name.endswith("int8.tflite")
        assert inputs["dtype"] == (np.int8 if full_integer else np.float32), name
        batch = images
        if full_integer:
            scale, zero_point = inputs["quantization"]
            batch = np.clip(np.round(images / scale + zero_point), -128, 127).astype(np.int8)
        interpreter.set_tensor(inputs["index"], batch)
        interpreter.invoke()
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert output.shape == (3, 10), name
    for name in ("keras_float32.keras", "keras_int8.keras"):
        assert keras.saving.load_model(models / name).predict_on_batch(images).shape == (3, 10)


def _kernel_zeros_in_tflite(path: Path) -> tuple[int, int]:
    """Zeros and weights in the weight tensors of a .tflite file's CONV_2D and FULLY_CONNECTED operators."""
    interpreter = litert.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    if not hasattr(interpreter, "_get_ops_details"):
        pytest.skip("this LiteRT has no _get_ops_details to find weight tensors")
    zeros = total = 0
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            weights = interpreter.get_tensor(int(op["inputs"][1]))
            zeros += int(weights.size - np.count_nonzero(weights))
            total += int(weights.size)
    return zeros, total


@pytest.mark.slow
def test_reported_sparsity_is_the_zeros_counted_in_the_saved_pruned_model(
    tiny_run: tuple[Path, subprocess.CompletedProcess[str], dict[str, Any] | None],
) -> None:
    directory, process, document = tiny_run
    assert process.returncode == 0 and document is not None, process.stderr
    reported = _rows(document)["pruned_50"]["sparsity"]
    saved = keras.saving.load_model(directory / "deploy-models" / f"{pruned_variant(0.5)}.keras")
    kernels = [
        np.asarray(layer.kernel)
        for layer in saved.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
    ]
    zeros = sum(int(np.sum(kernel == 0)) for kernel in kernels)
    total = sum(kernel.size for kernel in kernels)
    assert reported["metadata"]["zero_weights"] == zeros and reported["metadata"]["pruned_weights"] == total
    assert reported["value"] == pytest.approx(zeros / total)
    assert reported["value"] >= 0.5 - 1e-3
    # The deployable files carry those zeros: the float32 file exactly, the int8 file at least (small weights
    # round to zero too).
    assert _kernel_zeros_in_tflite(directory / "deploy-models" / "pruned_50.tflite") == (zeros, total)
    int8_zeros, int8_total = _kernel_zeros_in_tflite(directory / "deploy-models" / "pruned_50_int8.tflite")
    assert int8_total == total and int8_zeros >= zeros


@pytest.mark.slow
def test_the_defaults_show_int8_and_pruning_gains_on_the_digits_cnn(
    tmp_path: Path, payload_env: dict[str, str], payload_argv: Callable[[Path, Path], list[str]]
) -> None:
    process, document = _run(tmp_path, payload_env, payload_argv, {})
    assert process.returncode == 0, process.stderr
    assert document is not None and document["errors"] == []
    rows = _rows(document)
    assert set(rows) == {"float32", "dynamic_range", "float16", "int8", "keras_float32", "keras_int8", "pruned_50",
                         "pruned_75", "pruned_75_int8", "pruned_90"}  # fmt: skip
    float32, int8, pruned_75 = rows["float32"], rows["int8"], rows["pruned_75"]
    assert int8["model_bytes"]["value"] <= 0.30 * float32["model_bytes"]["value"]
    assert int8["accuracy_delta"]["value"] >= -1.0
    assert pruned_75["model_bytes_gzip"]["value"] <= 0.5 * float32["model_bytes_gzip"]["value"]
    assert pruned_75["accuracy_delta"]["value"] >= -1.5
    assert pruned_75["sparsity"]["value"] >= 0.75 - 1e-3
    assert all(row["latency_ms_p50"]["value"] > 0 and row["latency_ms_p90"]["value"] > 0 for row in rows.values())
    assert not list(tmp_path.glob("deploy-models*"))  # the files went to a temporary folder, removed at the end


@pytest.mark.slow
def test_keras_int8_on_a_model_it_cannot_quantise_is_a_note_in_errors_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_suite: Callable[..., Path]
) -> None:
    from keras_bench.cli import main
    from keras_bench.deploy import keras_variants

    # Keras quantises no layer of a model without Dense, EinsumDense or Embedding layers; every model this
    # payload builds has a Dense classifier, so stand in for such a model at the one place the suite asks.
    monkeypatch.setattr(keras_variants, "quantize_keras_int8", lambda model: (model, ()))
    monkeypatch.chdir(tmp_path)
    params = {"limit": 60, "epochs": 1, "quantizations": ["keras_int8"], "sparsities": [], "prune_then_int8": [],
              "latency_runs": 2}  # fmt: skip
    out = tmp_path / "results.json"
    assert main(["--suite", str(write_suite(params, suite="deploy")), "--out", str(out)]) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    assert list(_rows(document)) == ["float32", "keras_float32"]
    [note] = document["errors"]
    assert note["stage"] == "deploy keras_int8" and note["type"] == "VariantSkipped"
    assert "found no layer it can quantise in model 'small_cnn'" in note["message"]


# --- Params and backends. ---


def _check(tmp_path: Path, params: dict[str, object]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"schema_version": 1, "suite": "deploy", "run_id": "r-check", "params": params}))
    probe = (
        "import runpy, sys\nsys.argv = ['keras_bench', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('keras_bench', run_name='__main__')\nfinally:\n"
        "    heavy = {'keras', 'tensorflow', 'ai_edge_litert'}\n"
        "    print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", probe, "--suite", str(path), "--check"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(BENCHMARKS)},
    )  # fmt: skip


@pytest.mark.parametrize(
    "params",
    [{}, {"quantizations": [], "sparsities": [], "prune_then_int8": []}, {"sparsities": 0.8, "quantizations": "int8"}],
)
def test_the_check_accepts_the_defaults_and_empty_steps_without_importing_keras(
    tmp_path: Path, params: dict[str, object]
) -> None:
    result = _check(tmp_path, params)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


@pytest.mark.parametrize(
    ("params", "field", "echo"),
    [
        ({"sparsities": [0.5, 1.0]}, "sparsities", "1.0"),
        ({"prune_then_int8": [0]}, "prune_then_int8", "[0]"),
        ({"quantizations": ["int8", "int4"]}, "quantizations", "int4"),
        ({"latency_runs": 0}, "latency_runs", "0"),
        ({"fine_tune_epochs": "six"}, "fine_tune_epochs", "six"),
    ],
)
def test_a_bad_param_fails_the_check_with_one_line(
    tmp_path: Path, params: dict[str, object], field: str, echo: str
) -> None:
    result = _check(tmp_path, params)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"keras_bench: error: param '{field}'") and echo in line


def test_a_bad_param_run_writes_the_error_and_no_samples(
    tmp_path: Path, payload_env: dict[str, str], payload_argv: Callable[[Path, Path], list[str]]
) -> None:
    process, document = _run(tmp_path, payload_env, payload_argv, {"quantizations": ["int4"]})
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1].startswith("keras_bench: error: param 'quantizations'")
    assert document is not None and document["samples"] == [] and document["errors"][0]["stage"] == "params"


def test_deploy_on_another_backend_says_it_needs_tensorflow(
    tmp_path: Path, payload_env: dict[str, str], payload_argv: Callable[[Path, Path], list[str]]
) -> None:
    pytest.importorskip("jax")
    process, document = _run(tmp_path, {**payload_env, "KERAS_BACKEND": "jax"}, payload_argv, {})
    assert process.returncode == 2, process.stderr
    assert (
        "keras_bench: error: suite 'deploy': TFLite conversion needs KERAS_BACKEND=tensorflow, received backend jax"
        in process.stderr.splitlines()
    )
    assert document is not None and document["samples"] == [] and document["errors"][0]["stage"] == "params"
    assert not list(tmp_path.glob("deploy-models*"))


def test_deploy_yaml_params_equal_the_payload_defaults(benchmarks_dir: Path) -> None:
    yaml = pytest.importorskip("yaml")
    declared = yaml.safe_load((benchmarks_dir / "suites" / "deploy.yaml").read_text(encoding="utf-8"))
    assert declared["name"] == "deploy"
    assert declared["params"] == {spec.name: spec.default for spec in DEPLOY.params}
