"""Statistics over repeated measurements: percentiles, mean, sample stdev and the spread of repeats.

Numpy and the standard library only. A repeated figure is reported as its median with the extremes and the
coefficient of variation beside it (``Spread``), so one noisy repeat shows instead of moving the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """Returns the q-th percentile (0-100) with linear interpolation, as numpy computes it."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def mean(values: Sequence[float]) -> float:
    """Returns the arithmetic mean."""
    if not values:
        raise ValueError("mean of an empty sequence")
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def stdev(values: Sequence[float]) -> float:
    """Returns the sample standard deviation (ddof=1); needs at least two values."""
    if len(values) < 2:
        raise ValueError(f"stdev needs at least two values. Received: {len(values)}")
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=1))


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one figure: the median, the extremes and the coefficient of variation."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median repeat (the figure a report shows)."""
        return float(np.median(np.asarray(self.values, dtype=np.float64)))

    @property
    def low(self) -> float:
        """The smallest repeat."""
        return min(self.values)

    @property
    def high(self) -> float:
        """The largest repeat."""
        return max(self.values)

    @property
    def cv(self) -> float | None:
        """Sample standard deviation over the mean; None with fewer than two repeats."""
        if len(self.values) < 2:
            return None
        average = mean(self.values)
        return stdev(self.values) / average if average > 0 else None
