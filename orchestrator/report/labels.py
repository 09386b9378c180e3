"""Naming a campaign's cells by what tells them apart: ``lr 0.001 · dropout 0.25``, not ``suite=accuracy, …``.

A cell's swept values (its suite and each swept param) are the same for many of its neighbours; a view that shows
all of them fills its width with what does not vary. :func:`swept_labels` keeps, for a set of cells, only the keys
whose values differ between them (a key some cells lack counts as differing), in the order the sweep gave them,
under short names. The terminal tables, the one-line cell events and the HTML legends all use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

SEPARATOR = " · "
# Short names for the swept keys a reader knows by them; other keys show as they are.
SHORT_NAMES = {"learning_rate": "lr", "batch_size": "batch", "batch_sizes": "batch", "precisions": "precision",
               "models": "model", "image_size": "image", "weight_decay": "wd"}
_MISSING = "<missing>"  # what a cell without a key counts as


def value_text(value: object) -> str:
    """A swept value as a label shows it: numbers in their shortest form (0.0001, 1e-05, 0.5), lists joined with
    commas, text without control characters."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(value_text(item) for item in value)
    return "".join(char for char in str(value) if char.isprintable())


def varying_keys(cells: Sequence[Mapping[str, object]]) -> list[str]:
    """The keys whose values differ between the cells, in order of first appearance; all keys when none differ."""
    keys = list(dict.fromkeys(key for values in cells for key in values))
    varying = [key for key in keys
               if len({repr(values[key]) if key in values else _MISSING for values in cells}) > 1]
    return varying or keys


def swept_labels(cells: Sequence[Mapping[str, object]]) -> list[str]:
    """One label per cell naming only what varies between the cells: ``lr 0.001 · dropout 0.25``.

    The suite is named by itself (``accuracy · lr 0.001``) when it varies; a key a cell lacks is left out of its
    label. With a single cell (nothing varies), every value is named.

    Args:
        cells: each cell's swept values (``suite`` and each swept param), in the sweep's order.
    """
    keys = varying_keys(cells)

    def part(key: str, value: object) -> str:
        return value_text(value) if key == "suite" else f"{SHORT_NAMES.get(key, key)} {value_text(value)}"

    return [SEPARATOR.join(part(key, values[key]) for key in keys if key in values) for values in cells]


def narrowed(labels: Sequence[str]) -> list[str]:
    """Labels of some of the cells (those one chart draws) without the parts all of them share: a campaign's
    ``accuracy · lr 0.001`` is ``lr 0.001`` among accuracy cells alone. Unchanged when that would leave one empty."""
    parts = [label.split(SEPARATOR) for label in labels]
    shared = set.intersection(*(set(p) for p in parts)) if parts else set()
    kept = [SEPARATOR.join(part for part in p if part not in shared) for p in parts]
    return kept if all(kept) else list(labels)
