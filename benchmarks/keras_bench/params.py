"""Suite params: declared once per suite, defaults filled, bad values rejected with one clear line."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from keras_bench.errors import ParamError

ParamValue = int | float | str | bool


@dataclass(frozen=True)
class ParamSpec:
    """One param a suite accepts."""

    name: str
    default: ParamValue
    expected: str  # what is accepted, in words, for the error message: "a positive integer"
    # Returns the accepted value in its canonical type, or None to reject it.
    coerce: Callable[[object], ParamValue | None]


def describe_value(value: object) -> str:
    """Renders a received value the way it appeared in the JSON suite document.

    Args:
        value: A value decoded from JSON.

    Returns:
        Its JSON text (``-1``, ``"ten"``, ``true``), or ``repr`` when it is not JSON-encodable.
    """
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


# The most each integer param may be: far above any real run, low enough that a typo (epochs=10**24) is refused
# before a machine is rented, not after. Params not named here stop at DEFAULT_MAXIMUM.
MAXIMA: dict[str, int] = {
    "batch_size": 65_536, "batch_sizes": 65_536, "per_replica_batch": 65_536, "throughput_batch": 65_536,
    "epochs": 100_000, "max_epochs": 100_000, "fine_tune_epochs": 100_000, "frozen_epochs": 100_000,
    "checkpoint_above_epochs": 100_000, "image_size": 4_096, "channels": 64, "num_classes": 1_000_000,
    "steps": 10_000_000, "warmup_steps": 1_000_000, "repeats": 10_000, "inference_repeats": 10_000,
    "latency_runs": 1_000_000, "representative_samples": 1_000_000, "examples": 100_000_000, "limit": 100_000_000,
    "shards": 100_000, "fine_tune_layers": 10_000, "cpu_devices": 1_024, "replica_counts": 1_024,
    "litert_threads": 1_024, "seed": 2**32 - 1, "worker_timeout_s": 7 * 24 * 3600,
}
DEFAULT_MAXIMUM = 1_000_000_000


def _integer(value: object, minimum: int, maximum: int = DEFAULT_MAXIMUM) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        return None
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def positive_int(name: str, default: int) -> ParamSpec:
    """Declares an integer param from 1 to its :data:`MAXIMA` bound."""
    top = MAXIMA.get(name, DEFAULT_MAXIMUM)
    return ParamSpec(name, default, f"a positive integer (at most {top:,})", lambda v: _integer(v, 1, top))


def non_negative_int(name: str, default: int) -> ParamSpec:
    """Declares an integer param from 0 to its :data:`MAXIMA` bound."""
    top = MAXIMA.get(name, DEFAULT_MAXIMUM)
    return ParamSpec(name, default, f"a non-negative integer (at most {top:,})", lambda v: _integer(v, 0, top))


def positive_float(name: str, default: float) -> ParamSpec:
    """Declares a finite number param greater than 0; integers are accepted and become floats."""

    def coerce(value: object) -> float | None:
        number = _number(value)
        return number if number is not None and number > 0 else None

    return ParamSpec(name, default, "a number greater than 0", coerce)


def fraction(name: str, default: float) -> ParamSpec:
    """Declares a number param in [0, 1), such as a dropout rate."""

    def coerce(value: object) -> float | None:
        number = _number(value)
        return number if number is not None and 0 <= number < 1 else None

    return ParamSpec(name, default, "a number in [0, 1)", coerce)


def choice(name: str, default: str, options: Sequence[str]) -> ParamSpec:
    """Declares a string param that must be one of ``options``."""
    accepted = tuple(options)
    return ParamSpec(
        name,
        default,
        f"one of {', '.join(accepted)}",
        lambda v: v if isinstance(v, str) and v in accepted else None,
    )


def resolve_params(specs: Sequence[ParamSpec], received: Mapping[str, object]) -> dict[str, ParamValue]:
    """Checks received params against a suite's specs and fills defaults for the missing ones.

    Args:
        specs: The params the suite accepts.
        received: The params from the suite document.

    Returns:
        The effective params, in spec order, each in its canonical type.

    Raises:
        ParamError: For the first unknown param (in name order) or the first bad value (in spec order);
            the message names the field, echoes the value received and says what is accepted.
    """
    known = {spec.name for spec in specs}
    for name in sorted(received):
        if name not in known:
            raise ParamError(
                f"param '{name}': unknown parameter, received {describe_value(received[name])}; "
                f"accepted parameters: {', '.join(sorted(known))}"
            )
    effective: dict[str, ParamValue] = {}
    for spec in specs:
        if spec.name not in received:
            effective[spec.name] = spec.default
            continue
        value = spec.coerce(received[spec.name])
        if value is None:
            received_text = describe_value(received[spec.name])
            raise ParamError(f"param '{spec.name}': expected {spec.expected}, received {received_text}")
        effective[spec.name] = value
    return effective


# --- Param kinds added for the training suites (accuracy, transfer, hparams). ---

AUTO = "auto"  # a param value meaning "let the suite decide", e.g. dropout from the data set size
ParamScalar = int | float | str | bool
ParamList = list[ParamScalar]  # the canonical value of a list_of param


def flag(name: str, default: bool) -> ParamSpec:
    """Declares a boolean param; only JSON ``true`` and ``false`` are accepted."""
    return ParamSpec(name, default, "true or false", lambda v: v if isinstance(v, bool) else None)


def text(name: str, default: str) -> ParamSpec:
    """Declares a free string param that must not be empty, such as a weights file path."""
    return ParamSpec(name, default, "a non-empty string", lambda v: v if isinstance(v, str) and v.strip() else None)


def fraction_or_auto(name: str, default: float | str) -> ParamSpec:
    """Declares a number param in [0, 1) that also accepts ``"auto"``, such as a dropout rate."""

    def coerce(value: object) -> float | str | None:
        if value == AUTO:
            return AUTO
        number = _number(value)
        return number if number is not None and 0 <= number < 1 else None

    return ParamSpec(name, default, f'"{AUTO}" or a number in [0, 1)', coerce)


def list_of(item: ParamSpec, default: Sequence[ParamScalar]) -> ParamSpec:
    """Declares a param holding a non-empty list whose items each pass ``item``'s check.

    A single scalar is accepted as a one-item list, so ``--set learning_rates=0.001`` works as well as
    ``--set learning_rates=[0.001,0.0001]``. The canonical value is a list (as YAML and JSON spell it).

    Args:
        item: The spec of one item; its name becomes the list param's name and its ``expected`` text
            describes the items.
        default: The default items.

    Returns:
        The list param's spec.
    """

    def coerce(value: object) -> ParamList | None:
        items = value if isinstance(value, list) else [value]
        accepted = [item.coerce(entry) for entry in items]
        if not accepted or any(entry is None for entry in accepted):
            return None
        return [entry for entry in accepted if entry is not None]

    return ParamSpec(
        item.name,
        cast(ParamValue, list(default)),
        f"a non-empty list (or a single value) of items each {item.expected}",
        cast(Callable[[object], ParamValue | None], coerce),
    )
