"""SQL straight to a store's database file, for tests that inspect or doctor the database on purpose.

The store has no query method (what the code reads, it reads through a named one); a test that wants a table's
rows, or to age a run's orchestrator, opens the file itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from orchestrator.store import Store


def sql(store: Store, statement: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
    """Runs one statement on a connection of its own (committed at once) and returns its rows."""
    db = sqlite3.connect(store.path, timeout=30.0, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        return db.execute(statement, args).fetchall()
    finally:
        db.close()
