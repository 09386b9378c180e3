"""Click parameter types that refuse at the command line what no run could use."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # newer click types ParamType by what it converts to; older ones do not subscript at run time
    _FloatType = click.ParamType[float]
else:
    _FloatType = click.ParamType


class FiniteFloat(_FloatType):
    """A finite number (not inf or nan), at least ``minimum`` when given.

    Args:
        minimum: the least value accepted, or None.
        above: True when the value must be strictly greater than ``minimum``.
    """

    name = "number"

    def __init__(self, minimum: float | None = None, *, above: bool = False) -> None:
        self.minimum = minimum
        self.above = above

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"received {value!r}; accepted: {self._accepted()}", param, ctx)
            if not math.isfinite(number):
                self.fail(f"received {value!r}; accepted: {self._accepted()}", param, ctx)
        if self.minimum is not None and (number <= self.minimum if self.above else number < self.minimum):
            self.fail(f"received {value!r}; accepted: {self._accepted()}", param, ctx)
        return number

    def _accepted(self) -> str:
        if self.minimum is None:
            return "a finite number"
        return f"a finite number {'>' if self.above else '>='} {self.minimum:g}"


NON_NEGATIVE = FiniteFloat(0.0)
POSITIVE = FiniteFloat(0.0, above=True)
