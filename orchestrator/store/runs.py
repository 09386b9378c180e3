"""Runs: created with the process that runs them, moved through their states, and finished in one transaction with
their results (samples and facts by host) and costs."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.cost import CostLine
from orchestrator.errors import UnknownRun
from orchestrator.inputs import run_id_text
from orchestrator.store.connection import StoreConnection, in_marks, like_prefix, now
from orchestrator.store.costs import insert_costs
from orchestrator.store.rows import FINAL_STATES, RunFacts, RunRow, first_gpu_model, run_row

# A run's cost: every cost line of it summed (NULL when it was never priced).
_RUN_COST = "(SELECT SUM(amount_usd) FROM costs c WHERE c.run_id = r.id)"


class RunStore(StoreConnection):
    """The ``runs`` table (with the ``documents`` and ``samples`` a finished run's results fill)."""

    def create_run(self, run_id: str, *, provider: str, suite: str, name: str | None, spec: dict[str, Any]) -> None:
        """Records a new run in state ``provisioning``, with the process and machine that runs it."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO runs (id, state, provider, suite, name, spec_json, created_at, orchestrator_pid, "
                "orchestrator_host) VALUES (?,?,?,?,?,?,?,?,?)",
                (run_id, "provisioning", provider, suite, name, json.dumps(spec), now().isoformat(), os.getpid(),
                 socket.gethostname()),
            )

    def set_state(self, run_id: str, state: str) -> None:
        """Moves a run to a new (non-final) state."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET state=? WHERE id=?", (state, run_id))

    def finish_run(
        self,
        run_id: str,
        *,
        state: str,
        duration_s: float,
        error: str | None,
        log_tail: str | None,
        results: Mapping[str, dict[str, Any]] | None,
        costs: Sequence[CostLine],
    ) -> None:
        """Records a run's end in one transaction: final state, results (samples and facts) and costs.

        Args:
            results: validated results documents by host (the machine each came from), or None. The run row
                keeps the first document's facts; every document's facts and samples are kept by host.
            costs: the run's cost lines, per machine and component.
        """
        if state not in FINAL_STATES:
            raise ValueError(f"final state expected, received {state!r}")
        # Rows are made before the write lock is taken: the lock is held only for the inserts, so twenty runs
        # recording large results at once wait less on each other.
        facts: list[tuple[str, ...]] = []
        samples: list[tuple[Any, ...]] = []
        for host, document in (results or {}).items():
            facts.append((host, *(json.dumps(document.get(key)) for key in ("host", "software", "timings")),
                          json.dumps(document.get("errors", [])), json.dumps(document.get("utilisation", []))))
            samples += [(run_id, host, s["benchmark"], s["metric"], float(s["value"]), s["unit"],
                         json.dumps(s.get("metadata", {}), sort_keys=True)) for s in document["samples"]]
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET state=?, finished_at=?, duration_s=?, error=?, log_tail=? WHERE id=?",
                (state, now().isoformat(), duration_s, error, log_tail, run_id),
            )
            if facts:  # the run row keeps the first document's facts
                db.execute(
                    "UPDATE runs SET host_json=?, software_json=?, timings_json=?, results_errors_json=?, "
                    "utilisation_json=? WHERE id=?",
                    (*facts[0][1:], run_id),
                )
            db.executemany(
                "INSERT OR REPLACE INTO documents (run_id, host, host_json, software_json, timings_json, "
                "errors_json, utilisation_json) VALUES (?,?,?,?,?,?,?)",
                [(run_id, *row) for row in facts],
            )
            db.executemany(
                "INSERT INTO samples (run_id, host, benchmark, metric, value, unit, metadata_json) "
                "VALUES (?,?,?,?,?,?,?)",
                samples,
            )
            insert_costs(db, run_id, costs)

    def resolve_run_id(self, prefix: str) -> str:
        """Returns the one run id that starts with ``prefix``.

        Raises:
            SpecError: the text cannot be a run id (empty, too long, characters no run id has).
            UnknownRun: no run, or several runs, match.
        """
        run_id_text(prefix)
        rows = self._read("SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at", (like_prefix(prefix),))
        ids = [str(r["id"]) for r in rows]
        if prefix in ids:
            return prefix
        if not ids:
            raise UnknownRun(f"no run with id {prefix!r}", hint="`orchestrate status` lists the runs")
        if len(ids) > 1:
            raise UnknownRun(f"run id {prefix!r} matches {len(ids)} runs", hint="give more of the id")
        return ids[0]

    def _run_rows(self, where: str, args: Sequence[Any]) -> list[RunRow]:
        return [run_row(r) for r in self._read(f"SELECT r.*, {_RUN_COST} AS cost_usd FROM runs r {where}", args)]

    def get_run(self, run_id: str) -> RunRow:
        """Returns one run by its full id.

        Raises:
            UnknownRun: the store has no such run.
        """
        run = self.find_run(run_id)
        if run is None:
            raise UnknownRun(f"no run with id {run_id!r}", hint="`orchestrate status` lists the runs")
        return run

    def find_run(self, run_id: str) -> RunRow | None:
        """Returns one run by its full id, or None when the store has none (yet: a run's process records it once
        its input is checked)."""
        rows = self._run_rows("WHERE r.id = ?", (run_id,))
        return rows[0] if rows else None

    def run_state(self, run_id: str) -> str | None:
        """Returns a run's state (None for a run not recorded): one read, for loops that watch runs end."""
        rows = self._read("SELECT state FROM runs WHERE id=?", (run_id,))
        return str(rows[0]["state"]) if rows else None

    def list_runs(self, *, last: int | None = None) -> list[RunRow]:
        """Returns runs, newest last; only the newest ``last`` when given."""
        if last is None:
            return self._run_rows("ORDER BY r.created_at, r.id", ())
        rows = self._run_rows("ORDER BY r.created_at DESC, r.id DESC LIMIT ?", (last,))
        return list(reversed(rows))

    def run_facts(self, run_ids: Sequence[str]) -> list[RunFacts]:
        """Returns the runs' facts as a report lists them, oldest first (unknown ids left out)."""
        if not run_ids:
            return []
        rows = self._read(
            f"SELECT r.id, r.name, r.provider, r.suite, r.state, r.created_at, r.duration_s, {_RUN_COST} "
            f"FROM runs r WHERE r.id IN ({in_marks(run_ids)}) ORDER BY r.created_at, r.id", list(run_ids))
        return [RunFacts(*row) for row in rows]

    def run_gpu_models(self, run_ids: Sequence[str]) -> dict[str, str | None]:
        """Returns each run's first GPU model as its (first) machine's results reported it (None: no GPU, or none
        recorded)."""
        if not run_ids:
            return {}
        rows = self._read(f"SELECT id, host_json FROM runs WHERE id IN ({in_marks(run_ids)})", list(run_ids))
        return {row["id"]: first_gpu_model(row["host_json"]) for row in rows}
