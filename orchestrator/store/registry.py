"""The run registry: SQLite in WAL mode at ``$ORCHESTRATE_HOME/state.db``; the only writer of state.

Tables: runs, machines, events, samples, costs (one line per machine and component), documents, leases and
logs (each machine's payload log).
Every write is one transaction, so a run is never half-recorded: results are ingested with their samples and
state in a single commit. Use it as a context manager (``with Store(home) as store: …``).

Each table's reads and writes live in a module of their own (one class each, all on one connection:
:class:`~orchestrator.store.connection.StoreConnection`); :class:`Store` is all of them.
"""

from __future__ import annotations

from orchestrator.store.costs import CostStore
from orchestrator.store.events import EventStore
from orchestrator.store.leases import LeaseStore
from orchestrator.store.logs import LogStore
from orchestrator.store.machines import MachineStore
from orchestrator.store.runs import RunStore
from orchestrator.store.samples import SampleStore


class Store(RunStore, EventStore, MachineStore, CostStore, LogStore, LeaseStore, SampleStore):
    """The SQLite run registry.

    Several processes share one store: readers never take the write lock (opening an up-to-date store only reads
    its version), and each write waits its turn for the lock for up to ``lock_wait_s`` in all.

    Args:
        home: the Orchestrate home directory; the database is ``home / "state.db"``.
        lock_wait_s: how long a write keeps trying for the write lock before it fails.
        clock: monotonic seconds (injected in tests).
        sleep: how to wait between tries (injected in tests).
    """
