"""The hparams suite: the grid end to end, the default dropout rule, and the list params."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keras_bench.errors import ParamError
from keras_bench.params import resolve_params
from keras_bench.suites import SUITES
from keras_bench.training.checkpoint import WORKDIR_ENV
from keras_bench.training.fit import auto_dropout, resolve_dropout

# Its module-scoped payload runs are shared by its tests: one worker (make test's --dist loadgroup) runs them once.
pytestmark = pytest.mark.xdist_group("hparams_suite")

PAYLOAD_TIMEOUT_S = 180
HPARAMS_SPECS = SUITES["hparams"].params


@pytest.fixture(scope="module")
def grid_document(
    tmp_path_factory: pytest.TempPathFactory,
    payload_env: dict[str, str],
    payload_argv: Callable[[Path, Path], list[str]],
) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("hparams")
    suite = directory / "suite.json"
    # Default optimizers and learning rates; dropout both by the rule and fixed; one epoch each.
    params = {"epochs": 1, "dropouts": ["auto", 0.1], "tensorboard": False}
    suite.write_text(json.dumps({"schema_version": 1, "suite": "hparams", "run_id": "r-hp", "params": params}))
    out = directory / "results.json"
    process = subprocess.run(
        payload_argv(suite, out),
        env={**payload_env, WORKDIR_ENV: str(directory)},
        capture_output=True,
        text=True,
        timeout=PAYLOAD_TIMEOUT_S,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


def _by_point(document: dict[str, Any], metric: str) -> dict[tuple[str, float, float], dict[str, Any]]:
    rows = [s for s in document["samples"] if (s["benchmark"], s["metric"]) == ("hparams", metric)]
    return {(s["metadata"]["optimizer"], s["metadata"]["learning_rate"], s["metadata"]["dropout"]): s for s in rows}


@pytest.mark.slow
def test_hparams_document_validates_against_the_schema(grid_document: dict[str, Any], schema_validator: Any) -> None:
    assert list(schema_validator.iter_errors(grid_document)) == []
    assert grid_document["errors"] == []


@pytest.mark.slow
def test_every_grid_point_gets_accuracy_loss_and_seconds(grid_document: dict[str, Any]) -> None:
    expected = {
        (optimizer, learning_rate, dropout)
        for optimizer in ("adam", "sgd")
        for learning_rate in (0.001, 0.0001)
        for dropout in (0.38, 0.1)
    }
    for metric in ("accuracy", "loss", "seconds"):
        rows = [s for s in grid_document["samples"] if (s["benchmark"], s["metric"]) == ("hparams", metric)]
        assert len(rows) == 8
        assert set(_by_point(grid_document, metric)) == expected
    assert all(row["value"] > 0 for row in _by_point(grid_document, "seconds").values())


@pytest.mark.slow
def test_grid_points_record_momentum_and_which_rule_chose_the_dropout(grid_document: dict[str, Any]) -> None:
    rows = _by_point(grid_document, "accuracy")
    assert rows[("sgd", 0.001, 0.1)]["metadata"]["momentum"] == 0.9
    assert rows[("adam", 0.001, 0.1)]["metadata"]["momentum"] is None
    assert rows[("adam", 0.001, 0.38)]["metadata"]["dropout_rule"] == "auto"
    assert rows[("adam", 0.001, 0.1)]["metadata"]["dropout_rule"] == "fixed"
    assert rows[("adam", 0.001, 0.1)]["metadata"]["epochs"] == 1


@pytest.mark.slow
def test_one_epoch_of_adam_at_1e3_beats_sgd_at_1e4(grid_document: dict[str, Any]) -> None:
    rows = _by_point(grid_document, "accuracy")
    assert rows[("adam", 0.001, 0.38)]["value"] > rows[("sgd", 0.0001, 0.38)]["value"] + 0.3


def test_auto_dropout_is_half_for_tiny_data_and_falls_a_tenth_per_tenfold_to_a_floor() -> None:
    assert auto_dropout(1) == 0.5
    assert auto_dropout(100) == 0.5
    assert auto_dropout(1_000) == 0.4
    assert auto_dropout(1_438) == 0.38  # digits' training split
    assert auto_dropout(50_000) == 0.23  # CIFAR-10
    assert auto_dropout(1_281_167) == 0.1  # ImageNet
    assert auto_dropout(10**8) == 0.1
    sizes = [10**k for k in range(0, 9)]
    rates = [auto_dropout(n) for n in sizes]
    assert rates == sorted(rates, reverse=True)


def test_auto_dropout_rejects_an_empty_training_set() -> None:
    with pytest.raises(ValueError, match="train_images=0"):
        auto_dropout(0)


def test_resolve_dropout_names_the_rule() -> None:
    assert resolve_dropout("auto", 50_000) == (0.23, "auto")
    assert resolve_dropout(0.2, 50_000) == (0.2, "fixed")


def test_a_single_value_is_a_one_item_grid_axis() -> None:
    effective = resolve_params(HPARAMS_SPECS, {"learning_rates": 0.01, "optimizers": "sgd", "dropouts": 0})
    assert (effective["learning_rates"], effective["optimizers"], effective["dropouts"]) == ([0.01], ["sgd"], [0.0])


def test_grid_axis_with_a_bad_item_is_rejected_echoing_the_list() -> None:
    with pytest.raises(
        ParamError, match=r"^param 'optimizers': .*each one of adam, sgd, received \[\"adam\", \"rmsprop\"\]"
    ):
        resolve_params(HPARAMS_SPECS, {"optimizers": ["adam", "rmsprop"]})
    with pytest.raises(ParamError, match=r"^param 'learning_rates': .*received \[\]"):
        resolve_params(HPARAMS_SPECS, {"learning_rates": []})


def test_hparams_yaml_params_equal_the_payload_defaults(benchmarks_dir: Path) -> None:
    yaml = pytest.importorskip("yaml")
    declared = yaml.safe_load((benchmarks_dir / "suites" / "hparams.yaml").read_text(encoding="utf-8"))
    assert declared["name"] == "hparams"
    assert declared["params"] == {spec.name: spec.default for spec in HPARAMS_SPECS}
