"""The run store: SQLite (WAL) at ``$ORCHESTRATE_HOME/state.db``, the only writer of state.

:class:`Store` (:mod:`orchestrator.store.registry`) is one class per table on one connection
(:mod:`~orchestrator.store.connection`): runs, events, machines, costs, logs, leases, samples; what they return is
in :mod:`~orchestrator.store.rows`. :mod:`orchestrator.store.campaigns` keeps the campaigns; :mod:`~.schema` the
tables and their migrations.
"""

from orchestrator.store.connection import default_home, now
from orchestrator.store.leases import StoreLeases
from orchestrator.store.liveness import process_alive
from orchestrator.store.registry import Store
from orchestrator.store.rows import (
    FINAL_STATES,
    EventRow,
    Evictions,
    LogRow,
    MachineBill,
    MachineRow,
    RunFacts,
    RunRow,
)
from orchestrator.store.samples import SAMPLE_SEPARATOR, PackedSamples, SampleKey, SampleRow, unpack_key
from orchestrator.store.schema import SCHEMA_VERSION

__all__ = [
    "FINAL_STATES", "SAMPLE_SEPARATOR", "SCHEMA_VERSION", "EventRow", "Evictions", "LogRow", "MachineBill",
    "MachineRow", "PackedSamples", "RunFacts", "RunRow", "SampleKey", "SampleRow", "Store", "StoreLeases",
    "default_home", "now", "process_alive", "unpack_key",
]
