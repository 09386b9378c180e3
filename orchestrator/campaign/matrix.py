"""Campaigns: a sweep file expanded into cells (one run each) — machines × suites × params — with ``exclude:`` rules,
each cell planned (its projected duration and cost from the catalog or inventory), and the cells a budget allows.

A sweep file::

    name: seed-question
    suites: [throughput]
    machines:                       # each: provider and the run's machine fields (instance_type, gpu, host, …)
      - {provider: local}
      - {provider: aws, instance_type: g4dn.xlarge}
      - {provider: azure, gpu: T4}
    params:                         # each value of each list is a cell of its own (for the suites that have it)
      batch_sizes: [32, 64]
      precisions: [float32, mixed_float16]
    exclude:                        # a cell matching every key of a rule is left out
      - {provider: local, precisions: mixed_float16}
    parallel: 2
    budget_usd: 20

Pure: expanding and planning read the suites, the catalog and the inventory, and nothing else; :func:`check_cell_params`
then has the payload check each distinct cell's params (a short subprocess each), as a run does before launching.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.errors import SpecError
from orchestrator.inputs import spec_error
from orchestrator.plan import make_plan
from orchestrator.remote.payload import check_params
from orchestrator.spec import Backend, ParamValue, RunSpec, _read_yaml, load_suite

# The keys of a machine entry (besides provider) and of an exclude rule that name where a cell runs.
_MACHINE_KEYS = ("instance_type", "gpu", "region", "spot", "host", "count", "image", "price_per_hour")


class SweepSpec(BaseModel):
    """A sweep file: what to run where, how many at once, and the most it may cost."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    # Each a suite's name (or path), or {suite: {param: value, …}}: params fixed for that suite's cells.
    suites: list[str | dict[str, dict[str, ParamValue]]] = Field(min_length=1)
    machines: list[dict[str, Any]] = Field(min_length=1)
    params: dict[str, list[ParamValue]] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    parallel: int = Field(default=1, ge=1, le=64)
    budget_usd: float | None = Field(default=None, gt=0)
    backend: Backend = "tensorflow"
    timeout_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)

    @field_validator("machines")
    @classmethod
    def _providers_named(cls, machines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for machine in machines:
            if "provider" not in machine:
                raise ValueError("each machine names its provider, e.g. {provider: aws, instance_type: g4dn.xlarge}")
        return machines

    @field_validator("suites")
    @classmethod
    def _one_suite_each(cls, suites: list[str | dict[str, dict[str, ParamValue]]]) -> list[
            str | dict[str, dict[str, ParamValue]]]:
        for entry in suites:
            if isinstance(entry, dict) and len(entry) != 1:
                raise ValueError("each entry a suite name, or one suite with its fixed params: {accuracy: {max_epochs: "
                                 "20}}")
        return suites

    def suite_params(self) -> dict[str, dict[str, ParamValue]]:
        """Each suite named, in order, with the params fixed for its cells."""
        fixed: dict[str, dict[str, ParamValue]] = {}
        for entry in self.suites:
            name, params = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
            fixed.setdefault(name, {}).update(params)
        return fixed

    @field_validator("params")
    @classmethod
    def _values_listed(cls, params: dict[str, list[ParamValue]]) -> dict[str, list[ParamValue]]:
        empty = [name for name, values in params.items() if not values]
        if empty:
            raise ValueError(f"at least one value for {empty[0]}")
        return params


@dataclass(frozen=True)
class Cell:
    """One run of a campaign: where, which suite, which params; ``id`` is stable across expansions of the file."""

    id: str
    spec: RunSpec
    where: str  # "aws g4dn.xlarge", "rented lab-4090", "local"
    values: dict[str, Any]  # the swept values: suite and each swept param


@dataclass(frozen=True)
class PlannedCell:
    """A cell with its projection and whether the budget lets it start."""

    cell: Cell
    duration_s: float
    cost_usd: float
    choice: str  # the plan's first placement, with its price
    within_budget: bool = True
    params: dict[str, Any] = field(default_factory=dict)  # the suite's params as resolved for the cell


@dataclass(frozen=True)
class Matrix:
    """The campaign as planned: every cell in order, what the rules left out, and the totals."""

    cells: list[PlannedCell]
    excluded: int  # cells the exclude rules left out
    parallel: int
    budget_usd: float | None
    wall_s: float = 0.0  # projected wall time of the cells within budget, run ``parallel`` at once
    warnings: list[str] = field(default_factory=list)

    @property
    def selected(self) -> list[PlannedCell]:
        """The cells the budget lets start."""
        return [c for c in self.cells if c.within_budget]

    @property
    def cost_usd(self) -> float:
        """The projected cost of the cells within budget."""
        return sum(c.cost_usd for c in self.selected)


def load_sweep(path: Path) -> SweepSpec:
    """Reads a sweep file.

    Raises:
        SpecError: the file is missing, not YAML, or a field is invalid (one line naming it).
    """
    data = _read_yaml(path, "FILE")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as error:
        raise spec_error(error, prefix=f"sweep {path.name}: ") from None


def _machine_fields(entry: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """A machine entry as the run's machine fields (``host: a`` is ``hosts: [a]``); a rented cell waits for its box
    (``wait_s``, default the cells' timeout) when another run holds it, rather than failing."""
    fields = {k: v for k, v in entry.items() if k != "provider"}
    if "host" in fields:
        fields["hosts"] = [fields.pop("host")]
    if entry["provider"] == "rented":
        fields.setdefault("wait_s", timeout_s)
    return fields


def _where(entry: dict[str, Any]) -> str:
    detail = entry.get("instance_type") or entry.get("host") or entry.get("gpu") or ""
    return f"{entry['provider']} {detail}".strip()


def _matches(rule: dict[str, Any], entry: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether a cell matches every key of an exclude rule (a list-valued param matches a rule naming its value)."""
    for key, wanted in rule.items():
        have = entry.get(key) if key == "provider" or key in _MACHINE_KEYS else values.get(key)
        if isinstance(have, list) and len(have) == 1:
            have = have[0]
        if have != wanted:
            return False
    return True


def expand(sweep: SweepSpec) -> tuple[list[Cell], int]:
    """The cells of a sweep in file order (machines, then suites, then params), and how many the rules left out.

    A swept param multiplies only the suites that have it.

    Raises:
        SpecError: a suite is unknown, an exclude rule names a key no cell has, or a cell's spec is invalid.
    """
    fixed = sweep.suite_params()
    suites = {name: load_suite(name) for name in fixed}
    known = {"provider", "suite", *_MACHINE_KEYS, *sweep.params}
    for index, rule in enumerate(sweep.exclude):
        unknown = sorted(set(rule) - known)
        if unknown:
            raise SpecError(f"exclude[{index}]", unknown[0], "provider, suite, a machine key (" + ", ".join(
                _MACHINE_KEYS) + ") or a swept param: " + ", ".join(sorted(sweep.params) or ["none"]))
    cells: list[Cell] = []
    excluded = 0
    for machine_index, entry in enumerate(sweep.machines):
        for suite_name, suite in suites.items():
            dims = [name for name in sweep.params if name in suite.params]
            for combo in itertools.product(*(sweep.params[name] for name in dims)):
                swept = dict(zip(dims, combo, strict=True))
                values = {"suite": suite_name, **swept}
                params = {**fixed[suite_name], **swept}
                if any(_matches(rule, entry, values) for rule in sweep.exclude):
                    excluded += 1
                    continue
                data = {"provider": entry["provider"], "suite": suite_name, "params": params,
                        "machine": _machine_fields(entry, sweep.timeout_s), "backend": sweep.backend,
                        "timeout_s": sweep.timeout_s}
                cell_id = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]
                try:
                    spec = RunSpec.model_validate({**data, "name": f"{sweep.name}/{cell_id}"})
                except ValidationError as error:
                    raise spec_error(error, prefix=f"machines[{machine_index}] ") from None
                cells.append(Cell(cell_id, spec, _where(entry), values))
    return cells, excluded


def plan_matrix(sweep: SweepSpec, *, home: Path, budget_usd: float | None = None,
                parallel: int | None = None) -> Matrix:
    """Expands and plans every cell, marks those the budget allows (in order: a cell that would take the total over
    the budget is left out, a later cheaper one may still fit), and projects the wall time.

    Raises:
        SpecError: the sweep is invalid, or a cell cannot be planned (the line names the cell).
    """
    budget = budget_usd if budget_usd is not None else sweep.budget_usd
    lanes = parallel or sweep.parallel
    cells, excluded = expand(sweep)
    planned: list[PlannedCell] = []
    said: dict[str, list[str]] = {}  # each plan warning once, with the cells it is about
    total = 0.0
    for cell in cells:
        try:
            plan = make_plan(cell.spec, home=home)
        except SpecError as error:
            raise SpecError(error.field, error.received, error.accepted,
                            message=f"cell {cell.id} ({cell.where}, {_values_text(cell.values)}): {error}") from None
        fits = budget is None or total + plan.estimated_cost_usd <= budget + 1e-9
        total += plan.estimated_cost_usd if fits else 0.0
        planned.append(PlannedCell(cell, plan.estimated_duration_s, plan.estimated_cost_usd,
                                   plan.placements[0].describe(), fits, dict(plan.params)))
        for text in plan.warnings:
            said.setdefault(text, []).append(cell.id)
    warnings = [f"cell{'s' if len(ids) > 1 else ''} {', '.join(ids)}: {text}" for text, ids in said.items()]
    selected = [c for c in planned if c.within_budget]
    return Matrix(planned, excluded, lanes, budget, wall_s=_wall_time(selected, lanes), warnings=warnings)


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _wall_time(cells: list[PlannedCell], lanes: int) -> float:
    """Projected wall time of the cells run ``lanes`` at once in order, cells on the same rented box one at a time."""
    free: list[float] = [0.0] * lanes  # when each lane is next free
    heapq.heapify(free)
    box_free: dict[str, float] = {}
    end = 0.0
    for planned in cells:
        lane = heapq.heappop(free)
        hosts = planned.cell.spec.machine.hosts or []
        start = max([lane, *(box_free.get(h, 0.0) for h in hosts)])
        finish = start + planned.duration_s
        for host in hosts:
            box_free[host] = finish
        heapq.heappush(free, finish)
        end = max(end, finish)
    return end


def check_cell_params(matrix: Matrix) -> None:
    """Has the payload check the params of each distinct (suite, params) of the cells, as a run would before
    launching (one short subprocess each).

    Raises:
        SpecError: the payload refuses a cell's params; the line names the cell.
    """
    seen: set[str] = set()
    for planned in matrix.cells:
        key = json.dumps([planned.cell.values["suite"], planned.params], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_params(str(planned.cell.values["suite"]), planned.params)
        except SpecError as error:
            raise SpecError(error.field, error.received, error.accepted, message=f"cell {planned.cell.id} "
                            f"({planned.cell.where}, {_values_text(planned.cell.values)}): {error}") from None
