"""The runs' samples read from the store in bulk, as arrays (the frames of :mod:`orchestrator.report.frame` are built
from them).

Each run's samples come packed in one row (:meth:`orchestrator.store.Store.packed_samples`), their values one row
each; the texts are split and coded in Arrow, so a million samples need no Python string each, only one per
distinct text. A text that does not split into the samples counted is read again one row per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.store import SAMPLE_SEPARATOR, SampleKey, Store, unpack_key

if TYPE_CHECKING:
    import numpy as np

_RUNS_PER_QUERY = 25  # bounds the text held at once, and the query's parameters


@dataclass
class Fetched:
    """The runs' samples as arrays, in the frames' order: the runs' order, then each run's samples by id."""

    run: np.ndarray  # each sample's run: its position in the runs frame
    sample_id: np.ndarray  # samples.id
    key: np.ndarray  # each sample's position in ``keys``
    value: np.ndarray  # float64
    keys: list[SampleKey]  # distinct (host, benchmark, metric, unit, metadata JSON)


class _Unreadable(Exception):
    """The text read in one row per run does not split into the samples counted (a name holding a separator,
    or samples recorded between the two reads): the samples are read again, one row each."""


_Batch = tuple["np.ndarray", "np.ndarray", "np.ndarray", "np.ndarray"]  # run positions, ids, keys, values


def fetch(store: Store, run_ids: list[str]) -> Fetched:
    """Reads the runs' samples: per run, its samples' ids and text in one row; then their values, one row each."""
    position = {run_id: i for i, run_id in enumerate(run_ids)}
    lookup: dict[str, int] = {}  # a sample's text → its key
    try:
        batches = [_read_batch(store, run_ids[start:start + _RUNS_PER_QUERY], position, lookup)
                   for start in range(0, len(run_ids), _RUNS_PER_QUERY)]
        keys = [_unpacked(sample) for sample in lookup]
    except _Unreadable:
        return _fetch_rows(store, run_ids)
    return _assembled(batches, keys)


def _unpacked(text: str) -> SampleKey:
    key = unpack_key(text)
    if key is None:
        raise _Unreadable
    return key


def _read_batch(store: Store, batch: list[str], position: dict[str, int], lookup: dict[str, int]) -> _Batch:
    """Reads some runs' samples, in SQLite's order of run ids, each run's by id; new texts join ``lookup``."""
    # numpy and pyarrow (0.2-0.4 s of imports) only for a report: `orchestrate status` imports the report's modules.
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    runs = store.packed_samples(batch)
    values = store.sample_values(batch)
    counts = np.array([run.count for run in runs], dtype=np.int64)
    total = int(counts.sum())
    if len(values) != total:
        raise _Unreadable
    if not total:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0, dtype="float64")
    samples = pc.split_pattern(pa.array([run.texts for run in runs], type=pa.large_string()),
                               pattern=SAMPLE_SEPARATOR)
    ids_text = pc.split_pattern(pa.array([run.ids for run in runs], type=pa.large_string()), pattern=",")
    if (pc.list_value_length(samples).to_numpy() != counts).any() or len(ids_text.flatten()) != total:
        raise _Unreadable
    ids = ids_text.flatten().cast(pa.int64()).to_numpy()
    coded = pc.dictionary_encode(samples.flatten())
    texts = coded.dictionary.to_pylist()
    keys = np.array([lookup.setdefault(sample, len(lookup)) for sample in texts], dtype=np.int64)[
        coded.indices.to_numpy()]
    value = np.array(values, dtype="float64")
    run = np.repeat(np.arange(len(counts)), counts)
    if ((np.diff(ids) <= 0) & (np.diff(run) == 0)).any():  # group_concat's order is SQLite's: put each run's
        order = np.lexsort((ids, run))                        # samples in id order, as their values are
        ids, keys = ids[order], keys[order]
    return np.array([position[r.run_id] for r in runs], dtype=np.int64)[run], ids, keys, value


def _fetch_rows(store: Store, run_ids: list[str]) -> Fetched:
    """Reads the runs' samples one row each (slower; for the text :func:`_read_batch` cannot split)."""
    import numpy as np

    lookup: dict[SampleKey, int] = {}
    batches = []
    for start in range(0, len(run_ids), _RUNS_PER_QUERY):
        batch = run_ids[start:start + _RUNS_PER_QUERY]
        rows = store.sample_rows(batch)
        position = {run_id: start + i for i, run_id in enumerate(batch)}
        keys = [lookup.setdefault(row.key(), len(lookup)) for row in rows]
        batches.append((np.array([position[row.run_id] for row in rows], dtype=np.int64),
                        np.array([row.id for row in rows], dtype=np.int64), np.array(keys, dtype=np.int64),
                        np.array([row.value for row in rows], dtype="float64")))
    return _assembled(batches, list(lookup))


def _assembled(batches: list[_Batch], keys: list[SampleKey]) -> Fetched:
    """Joins the batches' arrays, in the runs' order (each run's samples by id)."""
    import numpy as np

    if not batches:
        empty = np.zeros(0, dtype=np.int64)
        return Fetched(empty, empty, empty, np.zeros(0, dtype="float64"), keys)
    run, ids, key, value = (np.concatenate(parts) for parts in zip(*batches, strict=True))
    order = np.argsort(run, kind="stable")
    return Fetched(run[order], ids[order], key[order], value[order], keys)
