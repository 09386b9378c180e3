"""What the store's reads return, and the one place each is made from a database row.

Every query that returns runs, machines, events, cost lines, logs, campaigns or cells builds them here, so a
column's decoding (JSON text, 0/1 flags, liveness of an unfinished run) is written once.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from orchestrator.cost import CostLine
from orchestrator.machine import Machine
from orchestrator.store.liveness import orchestrator_gone

FINAL_STATES = ("succeeded", "failed", "interrupted")


@dataclass(frozen=True)
class RunRow:
    """One run as the store holds it."""

    id: str
    state: str
    provider: str
    suite: str
    name: str | None
    created_at: str
    finished_at: str | None
    duration_s: float | None
    error: str | None
    log_tail: str | None
    cost_usd: float | None
    spec: dict[str, Any]
    # Not finished, yet the orchestrator process that ran it (on this machine) is gone: it died, or was killed.
    # Its machines may still be up: `orchestrate down RUN` tears them down.
    abandoned: bool = False


@dataclass(frozen=True)
class RunFacts:
    """A run's facts as a report lists them (one row of the report's runs frame, in its column order)."""

    run_id: str
    name: str | None
    provider: str
    suite: str
    state: str
    created_at: str
    duration_s: float | None
    cost_usd: float | None  # every cost line of the run summed; None when it was never priced


@dataclass(frozen=True)
class EventRow:
    """One lifecycle step of a run."""

    step: str
    started_at: str
    ended_at: str | None
    outcome: str | None
    detail: str | None


@dataclass(frozen=True)
class MachineRow:
    """One machine requested for a run, and what became of it."""

    row_id: int
    run_id: str
    provider: str
    machine_id: str | None  # None: requested, and no machine came of it (yet)
    state: str  # requested, running, terminated, cleanup_failed, evicted, forgotten, or failed (nothing created)
    address: str | None
    attempt: int  # which placement of the run's plan (1 = the first tried)
    touched: bool  # the run made its directory there: clean-up must reach the machine
    launched_at: str | None
    terminated_at: str | None
    machine: Machine | None  # the whole machine as recorded (Machine.from_record)


@dataclass(frozen=True)
class MachineBill:
    """What one machine of a run was billed, its cost lines summed (a row of the report's prices)."""

    run_id: str
    machine_id: str  # a host's name in the samples
    amount_usd: float
    billed_seconds: float
    machine_type: str | None  # the instance type, the inventory box, or "local"; None when not recorded
    rate_per_hour: float  # its price per hour (what prices a machine billed nothing)


@dataclass(frozen=True)
class Evictions:
    """A run's machines lost to spot evictions (each was replaced), and what they cost."""

    run_id: str
    machines: int
    cost_usd: float


@dataclass(frozen=True)
class LogRow:
    """One machine's payload log as the collect step kept it."""

    machine_id: str
    text: str
    truncated: int  # bytes of the log's start left out (0: the whole log)


@dataclass(frozen=True)
class CampaignRow:
    """One campaign as the store holds it."""

    id: str
    name: str
    file: str  # the sweep file it was started from (absolute path)
    sweep: dict[str, Any]  # the sweep as read then
    state: str  # running, completed, interrupted
    budget_usd: float | None
    parallel: int
    created_at: str
    finished_at: str | None
    # Not finished, yet the orchestrator process that ran it (on this machine) is gone: `--resume` continues it.
    abandoned: bool = False


@dataclass(frozen=True)
class CellRow:
    """One cell of a campaign and what became of it."""

    campaign_id: str
    cell_id: str
    position: int
    where: str
    values: dict[str, Any]
    spec: dict[str, Any]
    estimated_s: float
    estimated_usd: float
    state: str  # one of orchestrator.store.campaigns.CELL_STATES
    run_id: str | None  # the latest attempt's run
    attempts: int
    started_at: str | None
    finished_at: str | None
    error: str | None


def run_row(r: sqlite3.Row) -> RunRow:
    """A ``runs`` row with its ``cost_usd`` (the sum of its cost lines)."""
    return RunRow(
        id=r["id"],
        state=r["state"],
        provider=r["provider"],
        suite=r["suite"],
        name=r["name"],
        created_at=r["created_at"],
        finished_at=r["finished_at"],
        duration_s=r["duration_s"],
        error=r["error"],
        log_tail=r["log_tail"],
        cost_usd=r["cost_usd"],
        spec=json.loads(r["spec_json"]),
        abandoned=r["state"] not in FINAL_STATES and orchestrator_gone(
            r["orchestrator_pid"], r["orchestrator_host"], r["created_at"]),
    )


def event_row(r: sqlite3.Row) -> EventRow:
    """An ``events`` row."""
    return EventRow(r["step"], r["started_at"], r["ended_at"], r["outcome"], r["detail"])


def machine_row(r: sqlite3.Row) -> MachineRow:
    """A ``machines`` row, its recorded machine rebuilt."""
    return MachineRow(
        row_id=r["row_id"],
        run_id=r["run_id"],
        provider=r["provider"],
        machine_id=r["machine_id"],
        state=r["state"],
        address=r["address"],
        attempt=r["attempt"],
        touched=bool(r["touched"]),
        launched_at=r["launched_at"],
        terminated_at=r["terminated_at"],
        machine=Machine.from_record(json.loads(r["record_json"])) if r["record_json"] else None,
    )


def cost_line(r: sqlite3.Row) -> CostLine:
    """A ``costs`` row."""
    return CostLine(component=r["component"], seconds=float(r["seconds"]), billed_seconds=float(r["billed_seconds"]),
                    price_per_hour=float(r["price_per_hour"]), amount_usd=float(r["amount_usd"]), rule=r["rule"],
                    machine_id=r["machine_id"])


def cost_params(run_id: str, line: CostLine) -> tuple[Any, ...]:
    """A cost line as the ``costs`` table's columns (run_id, machine_id, component, seconds, billed_seconds,
    price_per_hour, amount_usd, rule)."""
    return (run_id, line.machine_id, line.component, line.seconds, line.billed_seconds, line.price_per_hour,
            line.amount_usd, line.rule)


def log_row(r: sqlite3.Row) -> LogRow:
    """A ``logs`` row."""
    return LogRow(r["machine_id"], r["text"], int(r["truncated"]))


def campaign_row(r: sqlite3.Row) -> CampaignRow:
    """A ``campaigns`` row."""
    return CampaignRow(
        r["id"], r["name"], r["file"], json.loads(r["sweep_json"]), r["state"], r["budget_usd"], r["parallel"],
        r["created_at"], r["finished_at"],
        abandoned=r["state"] == "running" and orchestrator_gone(r["orchestrator_pid"], r["orchestrator_host"],
                                                                r["created_at"]),
    )


def cell_row(r: sqlite3.Row) -> CellRow:
    """A ``campaign_cells`` row."""
    return CellRow(r["campaign_id"], r["cell_id"], r["position"], r["where_text"], json.loads(r["values_json"]),
                   json.loads(r["spec_json"]), r["estimated_s"], r["estimated_usd"], r["state"], r["run_id"],
                   r["attempts"], r["started_at"], r["finished_at"], r["error"])


def first_gpu_model(host_json: str | None) -> str | None:
    """The first GPU's model in a results document's ``host`` facts (as JSON text); None: no GPU, or unreadable."""
    try:
        gpus = json.loads(host_json or "{}").get("gpus") or []
    except (ValueError, AttributeError):
        gpus = []
    first = gpus[0] if gpus and isinstance(gpus[0], dict) else {}
    return str(first["name"]) if first.get("name") else None
