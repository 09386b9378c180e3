"""The store's schema and its migrations: each version's changes to the one before, applied in order when a
store is opened (a new store gets version 4's tables, then version 5's and later changes, so both paths are
one).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

SCHEMA_VERSION = 7
_DOCUMENTS_AND_LEASES = """
CREATE TABLE IF NOT EXISTS documents (
    run_id TEXT NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    host_json TEXT,
    software_json TEXT,
    timings_json TEXT,
    errors_json TEXT,
    utilisation_json TEXT,
    PRIMARY KEY (run_id, host)
);
CREATE TABLE IF NOT EXISTS leases (
    host TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    holder_pid INTEGER NOT NULL,
    acquired_at TEXT NOT NULL
);
"""
# Version 5: a machine row keeps the whole machine (Machine.to_record), its launch attempt and whether the run
# touched it (made its run directory); costs are kept per machine; a lease knows its holder's host.
_COSTS_V5 = """
CREATE TABLE IF NOT EXISTS costs{suffix} (
    run_id TEXT NOT NULL REFERENCES runs(id),
    machine_id TEXT NOT NULL DEFAULT '',
    component TEXT NOT NULL,
    seconds REAL NOT NULL,
    billed_seconds REAL NOT NULL,
    price_per_hour REAL NOT NULL,
    amount_usd REAL NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (run_id, machine_id, component)
);
"""
_V5 = (
    "ALTER TABLE machines ADD COLUMN record_json TEXT; "
    "ALTER TABLE machines ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1; "
    "ALTER TABLE machines ADD COLUMN touched INTEGER NOT NULL DEFAULT 0; "
    "ALTER TABLE leases ADD COLUMN holder_host TEXT; "
    + _COSTS_V5.format(suffix="_v5")
    # A run priced before version 5 had one machine's worth of lines (or several machines summed): they go to its
    # first machine.
    + "INSERT INTO costs_v5 SELECT c.run_id, COALESCE((SELECT m.machine_id FROM machines m WHERE m.run_id = c.run_id "
    "AND m.machine_id IS NOT NULL ORDER BY m.row_id LIMIT 1), ''), c.component, c.seconds, c.billed_seconds, "
    "c.price_per_hour, c.amount_usd, c.rule FROM costs c; "
    "DROP TABLE costs; ALTER TABLE costs_v5 RENAME TO costs;"
)
# Version 6: each machine's payload log, kept by the collect step (its last bytes; `truncated` counts the bytes of
# the log's start left out, 0 when it is whole).
_V6 = """
CREATE TABLE IF NOT EXISTS logs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    machine_id TEXT NOT NULL,
    text TEXT NOT NULL,
    truncated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, machine_id)
);
"""
# Version 7: campaigns (`orchestrate sweep`): a campaign and its cells, each cell's current run (assigned before the
# run's process starts) and every run any attempt of the cell made (what the campaign has spent).
_V7 = """
CREATE TABLE IF NOT EXISTS campaigns (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    file TEXT NOT NULL,
    sweep_json TEXT NOT NULL,
    state TEXT NOT NULL,
    budget_usd REAL,
    parallel INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    orchestrator_pid INTEGER,
    orchestrator_host TEXT
);
CREATE TABLE IF NOT EXISTS campaign_cells (
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    cell_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    where_text TEXT NOT NULL,
    values_json TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    estimated_s REAL NOT NULL,
    estimated_usd REAL NOT NULL,
    state TEXT NOT NULL,
    run_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    PRIMARY KEY (campaign_id, cell_id)
);
CREATE TABLE IF NOT EXISTS campaign_runs (
    run_id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    cell_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS campaigns_by_name ON campaigns(name);
"""
# What each schema version adds to the one before; a store is brought up to date when opened.
_MIGRATIONS = {
    2: "ALTER TABLE runs ADD COLUMN utilisation_json TEXT;",
    3: "ALTER TABLE samples ADD COLUMN host TEXT;" + _DOCUMENTS_AND_LEASES,
    4: "ALTER TABLE runs ADD COLUMN orchestrator_pid INTEGER; ALTER TABLE runs ADD COLUMN orchestrator_host TEXT;",
    5: _V5,
    6: _V6,
    7: _V7,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    provider TEXT NOT NULL,
    suite TEXT NOT NULL,
    name TEXT,
    spec_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    duration_s REAL,
    error TEXT,
    log_tail TEXT,
    host_json TEXT,
    software_json TEXT,
    timings_json TEXT,
    results_errors_json TEXT,
    utilisation_json TEXT,
    orchestrator_pid INTEGER,
    orchestrator_host TEXT
);
CREATE TABLE IF NOT EXISTS machines (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    provider TEXT NOT NULL,
    machine_id TEXT,
    state TEXT NOT NULL,
    address TEXT,
    request_json TEXT NOT NULL,
    extra_json TEXT,
    requested_at TEXT NOT NULL,
    launched_at TEXT,
    terminated_at TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    step TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    benchmark TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    metadata_json TEXT NOT NULL,
    host TEXT
);
CREATE INDEX IF NOT EXISTS events_by_run ON events(run_id);
CREATE INDEX IF NOT EXISTS samples_by_run ON samples(run_id);
CREATE TABLE IF NOT EXISTS costs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    component TEXT NOT NULL,
    seconds REAL NOT NULL,
    billed_seconds REAL NOT NULL,
    price_per_hour REAL NOT NULL,
    amount_usd REAL NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (run_id, component)
);
CREATE INDEX IF NOT EXISTS machines_by_run ON machines(run_id);
"""


def _record_legacy_machines(db: sqlite3.Connection) -> None:
    """Writes a version-5 record for each machine a version-4 store kept as loose ``extra`` strings (once)."""
    rows = db.execute("SELECT m.*, r.spec_json FROM machines m JOIN runs r ON r.id = m.run_id "
                      "WHERE m.machine_id IS NOT NULL AND m.record_json IS NULL").fetchall()
    for row in rows:
        extra = json.loads(row["extra_json"] or "{}")
        run_dir = extra.get("workdir", "")
        local = row["provider"] == "local"
        record = {
            "run_id": row["run_id"], "id": row["machine_id"], "provider": row["provider"],
            "placement": {"provider": row["provider"], "instance_type": row["machine_id"],
                          "price_per_hour": float(extra.get("price_per_hour") or 0.0)},
            "access": {"via": "local"} if local else {
                "host": row["address"] or "", "port": int(extra.get("port") or 22), "user": extra.get("user", ""),
                "key_path": extra.get("key_path"), "host_key": extra.get("host_key") or None,
                "trust_on_first_use": extra.get("trust_on_first_use") == "true"},
            # The run directory was <base>/runs/<run id> (rented) or <home>/machines/<run id> (local).
            "environment": {"prepare": extra.get("prepare", "image"), "python": extra.get("python", "python3"),
                            "workdir": extra.get("workdir_base") or str(Path(run_dir).parent.parent)},
            "run_dir": run_dir,
            "launched_at": row["launched_at"] or row["requested_at"],
            "state": "running" if row["terminated_at"] is None else "terminated",
        }
        db.execute("UPDATE machines SET record_json=? WHERE row_id=?", (json.dumps(record), row["row_id"]))


def upgrade(db: sqlite3.Connection, version: int) -> None:
    """Brings a store at schema ``version`` up to :data:`SCHEMA_VERSION`, inside the caller's write transaction."""
    # An older store gets its migrations, in order; a new one version 4's tables and then the later changes.
    first = 5 if version == 0 else version + 1
    scripts = [_SCHEMA + _DOCUMENTS_AND_LEASES] if version == 0 else []
    scripts += [_MIGRATIONS[target] for target in range(first, SCHEMA_VERSION + 1)]
    for script in scripts:
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)
    if 0 < version < 5:
        _record_legacy_machines(db)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
