"""Campaign planning: a sweep file expands into cells (machines × suites × params), exclude rules leave cells out, a
budget keeps the projected total within it, and the wall time respects the parallelism and shared rented boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.campaign import SweepSpec, expand, plan_matrix
from orchestrator.cli import cli
from orchestrator.errors import SpecError

INVENTORY = Path(__file__).resolve().parents[1] / "data" / "bad" / "inventory.yaml"  # box0, box1 (valid)


def _sweep(**fields: Any) -> SweepSpec:
    data: dict[str, Any] = {"name": "t", "suites": ["smoke"], "machines": [{"provider": "local"}], **fields}
    return SweepSpec.model_validate(data)


def test_cells_are_machines_times_suites_times_params_in_file_order() -> None:
    sweep = _sweep(machines=[{"provider": "local"}, {"provider": "aws", "instance_type": "g4dn.xlarge"}],
                   params={"batch_size": [32, 64], "dropout": [0.1, 0.3, 0.5]})
    cells, excluded = expand(sweep)
    assert len(cells) == 2 * 2 * 3 and excluded == 0
    assert [c.where for c in cells[:6]] == ["local"] * 6 and cells[6].where == "aws g4dn.xlarge"
    assert cells[0].values == {"suite": "smoke", "batch_size": 32, "dropout": 0.1}
    assert cells[0].spec.params == {"batch_size": 32, "dropout": 0.1} and cells[0].spec.provider == "local"
    assert len({c.id for c in cells}) == len(cells)


def test_a_swept_param_multiplies_only_the_suites_that_have_it() -> None:
    cells, _ = expand(_sweep(suites=["smoke", "throughput"], params={"dropout": [0.1, 0.5]}))
    assert [c.values["suite"] for c in cells] == ["smoke", "smoke", "throughput"]
    assert cells[2].spec.params == {}


def test_cell_ids_are_stable_and_change_only_with_their_own_cell() -> None:
    first, _ = expand(_sweep(params={"batch_size": [32, 64]}))
    again, _ = expand(_sweep(params={"batch_size": [32, 64]}))
    changed, _ = expand(_sweep(params={"batch_size": [32, 128]}))
    assert [c.id for c in first] == [c.id for c in again]
    assert first[0].id == changed[0].id and first[1].id != changed[1].id


def test_exclude_rules_leave_out_every_cell_matching_all_their_keys() -> None:
    sweep = _sweep(machines=[{"provider": "local"}, {"provider": "aws", "instance_type": "g4dn.xlarge"}],
                   params={"batch_size": [32, 64]}, exclude=[{"provider": "local", "batch_size": 64},
                                                            {"instance_type": "g4dn.xlarge", "suite": "smoke"}])
    cells, excluded = expand(sweep)
    assert [(c.where, c.values["batch_size"]) for c in cells] == [("local", 32)] and excluded == 3


def test_an_exclude_rule_naming_a_key_no_cell_has_is_refused() -> None:
    with pytest.raises(SpecError, match=r"invalid exclude\[0\]: received 'precision'"):
        expand(_sweep(params={"batch_size": [32]}, exclude=[{"precision": "float16"}]))


def test_the_budget_keeps_the_projected_total_within_it_in_order(tmp_path: Path) -> None:
    sweep = _sweep(machines=[{"provider": "aws", "instance_type": "g4dn.xlarge"},
                             {"provider": "aws", "instance_type": "p4d.24xlarge"},
                             {"provider": "aws", "instance_type": "g5.xlarge"}])
    everything = plan_matrix(sweep, home=tmp_path)
    costs = [c.cost_usd for c in everything.cells]
    budget = costs[0] + costs[2] + 0.001  # room for both small ones, not for the p4d between them
    matrix = plan_matrix(sweep, home=tmp_path, budget_usd=budget)
    assert [c.within_budget for c in matrix.cells] == [True, False, True]
    assert matrix.cost_usd <= budget and matrix.cost_usd == pytest.approx(costs[0] + costs[2])


def test_the_wall_time_runs_cells_in_parallel_but_one_at_a_time_per_rented_box(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATE_INVENTORY", str(INVENTORY))
    on_one_box = _sweep(machines=[{"provider": "rented", "host": "box0"}], params={"batch_size": [16, 32]},
                        parallel=2)
    on_two_boxes = _sweep(machines=[{"provider": "rented", "host": "box0"}, {"provider": "rented", "host": "box1"}],
                          parallel=2)
    one = plan_matrix(on_one_box, home=tmp_path)
    two = plan_matrix(on_two_boxes, home=tmp_path)
    assert one.wall_s == pytest.approx(sum(c.duration_s for c in one.cells))  # the box's lease serialises them
    assert two.wall_s == pytest.approx(max(c.duration_s for c in two.cells))  # two boxes, two lanes
    assert plan_matrix(on_two_boxes, home=tmp_path, parallel=1).wall_s == pytest.approx(
        sum(c.duration_s for c in two.cells))


def _cli(tmp_path: Path, sweep: dict[str, Any], *args: str) -> Any:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return CliRunner().invoke(cli, ["sweep", str(path), *args], env={"ORCHESTRATE_HOME": str(tmp_path / "home"),
                                                                      "COLUMNS": "200"})


def test_sweep_dry_run_prints_the_matrix_totals_and_warnings_and_writes_nothing(tmp_path: Path) -> None:
    sweep = {"name": "k80", "suites": ["smoke"], "params": {"batch_size": [32, 64]},
             "machines": [{"provider": "azure", "instance_type": "Standard_NC6"},
                          {"provider": "aws", "instance_type": "g4dn.xlarge"}]}
    result = _cli(tmp_path, sweep, "--dry-run", "--budget", "0.02", "--parallel", "2")
    assert result.exit_code == 0, result.output
    assert "4 cell(s)" not in result.output and "left out by the budget" in result.output
    assert "of a $0.02 budget" in result.output and "--parallel 2" in result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning")]
    retired = [w for w in warnings if "Standard_NC6 was retired on 2023-09-06" in w]
    assert len(retired) == 1 and retired[0].startswith("warning cells "), warnings
    # A dry run needs no Azure account; its plan says what a launch would need (AZURE_SUBSCRIPTION_ID is unset here).
    assert any("a launch needs AZURE_SUBSCRIPTION_ID (not set" in w for w in warnings), warnings
    assert not (tmp_path / "home").exists()


def test_a_suite_entry_fixes_params_for_its_own_cells_only() -> None:
    sweep = _sweep(suites=[{"accuracy": {"max_epochs": 7}}, "smoke"], params={"target_accuracy": [0.9, 0.95]})
    cells, _ = expand(sweep)
    accuracy = [c for c in cells if c.values["suite"] == "accuracy"]
    assert [c.spec.params for c in accuracy] == [{"max_epochs": 7, "target_accuracy": 0.9},
                                                 {"max_epochs": 7, "target_accuracy": 0.95}]
    assert all("max_epochs" not in c.values for c in accuracy)  # fixed, not swept: not in the cell's values
    assert [c.spec.params for c in cells if c.values["suite"] == "smoke"] == [{}]
    with pytest.raises(ValueError, match="one suite with its fixed params"):
        _sweep(suites=[{"accuracy": {}, "smoke": {}}])
