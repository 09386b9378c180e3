"""Magnitude pruning without a pruning library: the polynomial sparsity schedule and per-layer magnitude masks.

The schedule is tensorflow-model-optimization's ``PolynomialDecay``; the masks zero the smallest-magnitude
weights of one kernel. Pure numpy: which kernels are pruned and how the masks are kept during fine-tuning is
in ``deploy.keras_variants``. tfmot itself is not used because it rejects Keras 3 models (docs/payload.md,
*Suite deploy*).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

POWER = 3  # tfmot's PolynomialDecay default: sparsity rises fast at first, then levels off
# Share of the fine-tuning steps over which sparsity rises; the rest trains at the final sparsity, so the
# weights left recover accuracy with the mask fixed.
RAMP_FRACTION = 0.6
MASK_UPDATES = 10  # how many times the mask is recomputed on the way up (tfmot's `frequency`, as a count)


def polynomial_sparsity(
    step: int, initial_sparsity: float, final_sparsity: float, begin_step: int, end_step: int, power: int = POWER
) -> float:
    """Returns the target sparsity at a training step: s_f + (s_i - s_f) * (1 - p)^power.

    ``p = (step - begin_step) / (end_step - begin_step)``, clipped to [0, 1], so the sparsity is the initial
    one before ``begin_step`` and the final one from ``end_step`` on (tfmot's ``PolynomialDecay``).

    Args:
        step: Training steps done so far.
        initial_sparsity: s_i, the sparsity at ``begin_step``.
        final_sparsity: s_f, the sparsity reached at ``end_step``.
        begin_step: t0.
        end_step: t1, after ``begin_step``.
        power: The exponent.

    Returns:
        The fraction of weights to be zero.

    Raises:
        ValueError: When ``end_step`` is not after ``begin_step``.
    """
    if end_step <= begin_step:
        raise ValueError(f"end_step must be after begin_step. Received: begin_step={begin_step}, end_step={end_step}")
    progress = min(1.0, max(0.0, (step - begin_step) / (end_step - begin_step)))
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** power


@dataclass(frozen=True)
class PolynomialSchedule:
    """When the masks are recomputed during fine-tuning, and to what sparsity."""

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    frequency: int = 1  # steps between mask updates, counted from begin_step
    power: int = POWER

    def __post_init__(self) -> None:
        if not 0 <= self.initial_sparsity <= self.final_sparsity < 1:
            raise ValueError(
                "expected 0 <= initial_sparsity <= final_sparsity < 1. Received: "
                f"initial_sparsity={self.initial_sparsity}, final_sparsity={self.final_sparsity}"
            )
        if self.end_step <= self.begin_step or self.begin_step < 0 or self.frequency < 1:
            raise ValueError(
                "expected 0 <= begin_step < end_step and frequency >= 1. Received: "
                f"begin_step={self.begin_step}, end_step={self.end_step}, frequency={self.frequency}"
            )

    def sparsity_at(self, step: int) -> float:
        """Returns the target sparsity after ``step`` training steps."""
        return polynomial_sparsity(
            step, self.initial_sparsity, self.final_sparsity, self.begin_step, self.end_step, self.power
        )

    def updates_at(self, step: int) -> bool:
        """Whether the masks are recomputed after ``step`` training steps.

        Every ``frequency`` steps from ``begin_step`` up to ``end_step``, as tfmot does, and at ``end_step``
        itself (tfmot skips it when it is not on the frequency grid, and then never reaches the final sparsity).
        """
        if not self.begin_step <= step <= self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step


def fine_tune_schedule(final_sparsity: float, total_steps: int) -> PolynomialSchedule:
    """Returns the schedule the deploy suite prunes with: from 0 to ``final_sparsity`` over the first
    ``RAMP_FRACTION`` of the fine-tuning steps, the mask recomputed ``MASK_UPDATES`` times on the way.

    Args:
        final_sparsity: The target, in [0, 1).
        total_steps: Training steps of the whole fine-tuning.
    """
    end_step = max(1, round(total_steps * RAMP_FRACTION))
    return PolynomialSchedule(0.0, final_sparsity, 0, end_step, frequency=max(1, end_step // MASK_UPDATES))


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Returns a 0/1 mask that zeroes the ``round(sparsity * size)`` smallest-magnitude weights.

    Exactly that many, ties broken by position, so the measured sparsity of a masked kernel is the
    rounded target. Weights already zero are the smallest, so a rising sparsity keeps earlier zeros.

    Args:
        weights: One kernel.
        sparsity: Fraction of its weights to zero, in [0, 1].

    Returns:
        A float32 array shaped like ``weights``.
    """
    flat = np.abs(np.asarray(weights, dtype=np.float64)).ravel()
    zeroed = int(round(sparsity * flat.size))
    mask = np.ones(flat.size, dtype=np.float32)
    if zeroed > 0:
        mask[np.argpartition(flat, zeroed - 1)[:zeroed]] = 0.0
    return mask.reshape(np.shape(weights))


@dataclass(frozen=True)
class SparsityCount:
    """Zeros counted in a set of weight arrays."""

    zeros: int
    total: int

    @property
    def fraction(self) -> float:
        """Zeros over all weights counted; 0 when there were none."""
        return self.zeros / self.total if self.total else 0.0


def count_zeros(arrays: Iterable[np.ndarray]) -> SparsityCount:
    """Counts the weights that are exactly zero.

    Args:
        arrays: The weights, e.g. every prunable kernel of a model.

    Returns:
        The count over all of them.
    """
    zeros = total = 0
    for array in arrays:
        values = np.asarray(array)
        zeros += int(values.size - np.count_nonzero(values))
        total += int(values.size)
    return SparsityCount(zeros, total)
