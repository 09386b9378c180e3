"""Samples and results documents as the report reads them: in bulk, a run's samples packed into one row.

A report over a million samples reads one row per run of its samples' text (each sample's host, benchmark, metric,
unit and metadata, apart by :data:`FIELD_SEPARATOR`, the samples apart by :data:`SAMPLE_SEPARATOR`: JSON text
escapes both characters, and a name holding one is caught by the counts) and one row per value: a million rows of
five strings each cost several times as much (docs/performance.md, "Report generation"). :func:`unpack_key` reads
a sample's text back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.store.connection import StoreConnection, in_marks
from orchestrator.store.rows import first_gpu_model

FIELD_SEPARATOR = "\x1f"
SAMPLE_SEPARATOR = "\x1e"
# A sample's key as the report groups samples: (host, benchmark, metric, unit, metadata JSON); the host is None in a
# store written before samples kept it.
SampleKey = tuple[str | None, str, str, str, str]
# %Q writes a NULL bare and quotes a name (even the name "NULL"), so a missing host is told from one so named.
_PACKED = f"printf('{FIELD_SEPARATOR.join(['%Q'] + ['%s'] * 4)}', host, benchmark, metric, unit, metadata_json)"


@dataclass(frozen=True)
class PackedSamples:
    """One run's samples in one row: their count, ids and texts, each in the same order (SQLite's)."""

    run_id: str
    count: int
    ids: str  # the samples' ids, apart by commas
    texts: str  # each sample's key text (see unpack_key), apart by SAMPLE_SEPARATOR


@dataclass(frozen=True)
class SampleRow:
    """One sample, read one row each (what a packed text cannot carry)."""

    run_id: str
    id: int
    value: float
    host: str | None
    benchmark: str
    metric: str
    unit: str
    metadata_json: str

    def key(self) -> SampleKey:
        """The sample's key, as :func:`unpack_key` reads it from a packed text."""
        return self.host, self.benchmark, self.metric, self.unit, self.metadata_json


def unpack_key(text: str) -> SampleKey | None:
    """Returns the key of a sample's text as :meth:`SampleStore.packed_samples` packs it, or None when the text does
    not split into one (a name holding a separator)."""
    fields = text.split(FIELD_SEPARATOR)
    if len(fields) != 5:
        return None
    host, benchmark, metric, unit, metadata = fields
    if host == "NULL":
        return None, benchmark, metric, unit, metadata
    if len(host) < 2 or host[0] != "'" or host[-1] != "'":
        return None
    return host[1:-1].replace("''", "'"), benchmark, metric, unit, metadata


class SampleStore(StoreConnection):
    """The ``samples`` and ``documents`` tables, as reports read them (a finished run writes them)."""

    def packed_samples(self, run_ids: Sequence[str]) -> list[PackedSamples]:
        """Returns each of the runs' samples packed in one row (runs without samples left out), in SQLite's order
        of run ids."""
        return [PackedSamples(*row) for row in self._read(
            f"SELECT run_id, COUNT(*), group_concat(id), group_concat({_PACKED}, '{SAMPLE_SEPARATOR}') "
            f"FROM samples WHERE run_id IN ({in_marks(run_ids)}) GROUP BY run_id ORDER BY run_id", list(run_ids))]

    def sample_values(self, run_ids: Sequence[str]) -> list[float]:
        """Returns the runs' samples' values, by run id and then sample id."""
        rows = self._read(f"SELECT value FROM samples WHERE run_id IN ({in_marks(run_ids)}) ORDER BY run_id, id",
                          list(run_ids))
        return [row[0] for row in rows]

    def sample_rows(self, run_ids: Sequence[str]) -> list[SampleRow]:
        """Returns the runs' samples one row each, by run id and then sample id."""
        return [SampleRow(*row) for row in self._read(
            "SELECT run_id, id, value, host, benchmark, metric, unit, metadata_json FROM samples "
            f"WHERE run_id IN ({in_marks(run_ids)}) ORDER BY run_id, id", list(run_ids))]

    def host_gpu_models(self, run_ids: Sequence[str]) -> dict[tuple[str, str], str | None]:
        """Returns the first GPU model each host's own results document reported, by (run id, host)."""
        if not run_ids:
            return {}
        rows = self._read(f"SELECT run_id, host, host_json FROM documents WHERE run_id IN ({in_marks(run_ids)})",
                          list(run_ids))
        return {(row["run_id"], row["host"]): first_gpu_model(row["host_json"]) for row in rows}
