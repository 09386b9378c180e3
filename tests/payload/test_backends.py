"""Backend facts, precision policies and the XLA switch, on the backend the tests run with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from keras_bench.errors import ParamError
from keras_bench.models import backends
from keras_bench.models.backends import (
    PRECISIONS,
    backend_facts,
    check_precision,
    compile_options,
    precision_policy,
    require_tensorflow,
)
from keras_bench.models.builders import build_model


def test_backend_facts_name_the_keras_backend_and_its_library_version() -> None:
    facts = backend_facts()
    assert facts.name == keras.backend.backend()
    module = pytest.importorskip(facts.name)
    assert facts.version == module.__version__
    assert facts.gpus >= 0


@pytest.mark.parametrize(
    ("precision", "compute_dtype"),
    [("float32", "float32"), ("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")],
)
def test_precision_policy_builds_layers_in_that_precision_and_restores_the_previous_one(
    precision: str, compute_dtype: str
) -> None:
    before = keras.config.dtype_policy().name
    with precision_policy(precision):
        model = build_model("small_cnn", (8, 8, 1), 3)
    assert keras.config.dtype_policy().name == before
    first_conv = model.layers[0]
    assert first_conv.compute_dtype == compute_dtype
    assert first_conv.kernel.dtype == "float32"  # mixed precision keeps float32 variables
    assert model.layers[-1].compute_dtype == "float32"  # the softmax output stays float32


def test_precision_policy_is_restored_when_the_block_raises() -> None:
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError, match="boom"), precision_policy("mixed_float16"):
        raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == before


def test_unknown_precision_is_a_param_error_listing_the_choices() -> None:
    with pytest.raises(ParamError, match=r"param 'precisions'.*float32, mixed_float16, mixed_bfloat16.*'float8'"):
        check_precision("float8")
    assert check_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert "mixed_bfloat16" in PRECISIONS


@pytest.mark.parametrize("xla", [False, True])
def test_xla_switch_reaches_the_compiled_model(xla: bool) -> None:
    model = build_model("small_cnn", (8, 8, 1), 3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", **compile_options(xla))
    assert model.jit_compile is xla


def test_tensorflow_only_feature_on_another_backend_names_the_param_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backends, "backend_name", lambda: "jax")
    with pytest.raises(ParamError) as caught:
        require_tensorflow("pipeline", "the tf.data pipeline")
    message = str(caught.value)
    assert message == "param 'pipeline': the tf.data pipeline needs KERAS_BACKEND=tensorflow, received backend jax"


# Stands in for Keras and TensorFlow: imports the optional packages the way they do.
_OPTIONAL_IMPORTER = """
import sys
from keras_bench.models.backends import lean_imports
with lean_imports():
    held = [name for name in ("pandas", "sklearn", "jax") if sys.modules.get(name, 0) is None]
    try:
        import pandas
    except ImportError:
        pandas = None
import pandas as later
print(",".join(held), pandas is None, later.__name__, sys.modules["pandas"] is later)
"""


@pytest.mark.parametrize(
    ("backend", "held"),
    [("tensorflow", "pandas,sklearn,jax"), ("jax", "pandas,sklearn"), (None, "pandas,sklearn")],
)
def test_lean_imports_hold_the_optional_packages_off_inside_and_release_them_after(
    backend: str | None, held: str
) -> None:
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    process = subprocess.run(
        [sys.executable, "-c", _OPTIONAL_IMPORTER], cwd=Path(backends.__file__).parents[2], env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    assert process.stdout.split() == [held, "True", "pandas", "True"]


def test_lean_imports_leave_a_package_already_imported_alone() -> None:
    import pandas

    with backends.lean_imports():
        import pandas as inside
    assert inside is pandas and sys.modules["pandas"] is pandas

