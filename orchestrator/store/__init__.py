"""The run store: SQLite (WAL) at ``$ORCHESTRATE_HOME/state.db``, the only writer of state.

:mod:`orchestrator.store.registry` holds the :class:`Store` and its rows; :mod:`orchestrator.store.schema` the
tables and their migrations.
"""

from orchestrator.store.registry import (
    FINAL_STATES,
    EventRow,
    MachineRow,
    RunRow,
    Store,
    StoreLeases,
    default_home,
    now,
    process_alive,
)
from orchestrator.store.schema import SCHEMA_VERSION

__all__ = [
    "FINAL_STATES", "SCHEMA_VERSION", "EventRow", "MachineRow", "RunRow", "Store", "StoreLeases", "default_home",
    "now", "process_alive",
]
