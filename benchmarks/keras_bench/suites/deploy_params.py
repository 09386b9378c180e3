"""The deploy suite's params: declared once (``DEPLOY_PARAMS``, as in benchmarks/suites/deploy.yaml) and typed.

Both the suite's run (``suites.deploy``) and its variant measurements (``suites.deploy_variants``) read the typed
``DeployParams``; keeping them here lets the one import the other without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keras_bench.params import (
    ParamList,
    ParamSpec,
    ParamValue,
    choice,
    flag,
    list_of,
    non_negative_int,
    positive_float,
    positive_int,
    text,
)
from keras_bench.suites.training_recipe import DataChoice, data_params

QUANTIZATIONS = ("dynamic_range", "float16", "int8", "keras_int8")


def _sparsity_item(name: str, default: float) -> ParamSpec:
    def coerce(value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        number = float(value)
        return number if 0 < number < 1 else None

    return ParamSpec(name, default, "a number above 0 and below 1", coerce)


def _list_or_empty(item: ParamSpec, default: Sequence[float | str]) -> ParamSpec:
    """A ``list_of`` param that also accepts ``[]``, which turns its step off."""
    spec = list_of(item, default)

    def coerce(value: object) -> ParamValue | None:
        return [] if value == [] else spec.coerce(value)  # type: ignore[return-value]

    return ParamSpec(spec.name, spec.default, f"{spec.expected}, or [] for none", coerce)


# Keep names and defaults identical to benchmarks/suites/deploy.yaml.
DEPLOY_PARAMS = (
    text("model", "small_cnn"),
    *data_params("digits"),
    positive_int("epochs", 10),
    positive_int("fine_tune_epochs", 6),
    _list_or_empty(_sparsity_item("sparsities", 0.5), [0.5, 0.75, 0.9]),
    _list_or_empty(choice("quantizations", "int8", QUANTIZATIONS), list(QUANTIZATIONS)),
    _list_or_empty(_sparsity_item("prune_then_int8", 0.75), [0.75]),
    positive_int("batch_size", 32),
    positive_float("learning_rate", 0.001),
    positive_int("latency_runs", 200),
    positive_int("throughput_batch", 32),
    positive_int("representative_samples", 100),
    non_negative_int("litert_threads", 1),
    non_negative_int("seed", 0),
    flag("keep_models", False),
)


def _unique(values: ParamValue) -> tuple[Any, ...]:
    items: ParamList = values if isinstance(values, list) else [values]
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class DeployParams:
    """The deploy suite's params, typed."""

    model: str
    data: DataChoice
    epochs: int  # baseline training
    fine_tune_epochs: int  # per pruned model, while its sparsity rises and then holds
    sparsities: tuple[float, ...]  # pruned variants measured as float32 TFLite files
    quantizations: tuple[str, ...]  # subset of QUANTIZATIONS
    prune_then_int8: tuple[float, ...]  # sparsities whose pruned model is also converted to int8
    batch_size: int  # training and fine-tuning batch
    learning_rate: float  # Adam, for training and fine-tuning
    latency_runs: int  # timed batch-1 calls per variant
    throughput_batch: int  # images per call for images/sec and for accuracy
    representative_samples: int  # training images that calibrate full-integer int8
    litert_threads: int  # CPU threads of the LiteRT interpreter; 0 means every CPU of the machine
    seed: int
    keep_models: bool  # keep the files in <run dir>/deploy-models instead of a temporary folder

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> DeployParams:
        """Types the effective params that ``resolve_params`` produced from ``DEPLOY_PARAMS``."""
        return cls(
            model=str(params["model"]),
            data=DataChoice.from_params(params),
            epochs=int(params["epochs"]),
            fine_tune_epochs=int(params["fine_tune_epochs"]),
            sparsities=tuple(float(s) for s in _unique(params["sparsities"])),
            quantizations=tuple(str(q) for q in _unique(params["quantizations"])),
            prune_then_int8=tuple(float(s) for s in _unique(params["prune_then_int8"])),
            batch_size=int(params["batch_size"]),
            learning_rate=float(params["learning_rate"]),
            latency_runs=int(params["latency_runs"]),
            throughput_batch=int(params["throughput_batch"]),
            representative_samples=int(params["representative_samples"]),
            litert_threads=int(params["litert_threads"]),
            seed=int(params["seed"]),
            keep_models=bool(params["keep_models"]),
        )
