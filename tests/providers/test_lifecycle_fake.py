"""The lifecycle driven in-process against the stateful fake provider: failover, per-machine cost, a teardown
that no exception can skip. The payload is a real (fake) process run through the local shell."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.catalog.spot import PriceQuote, SpotQuoter
from orchestrator.errors import AuthError, CapacityError, ProviderError, QuotaError, SpotRefused
from orchestrator.lifecycle import execute_plan
from orchestrator.machine import Placement
from orchestrator.plan import Plan
from orchestrator.run_steps import RunContext
from orchestrator.spec import RunSpec, load_suite
from orchestrator.store import Store
from tests.conftest import FAKE_MAIN_HEADER
from tests.fakes.provider import FakeProvider, LaunchFault
from tests.fakes.reporter import QuietReporter

# $3.6 an hour, billed per second with a 60 s minimum: a machine that existed for a moment costs $0.06.
FIRST = Placement(provider="fake", instance_type="gpu.big", region="lab-1", price_per_hour=3.6,
                  billing_rule="aws_linux")
SECOND = Placement(provider="fake", instance_type="gpu.small", region="lab-2", price_per_hour=1.8,
                   billing_rule="aws_linux")




@pytest.fixture
def payload(fake_payload: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    package = fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", 100.0)])\n')
    monkeypatch.setenv("ORCHESTRATE_PAYLOAD_DIR", str(package))


@pytest.fixture
def fake(tmp_path: Path) -> FakeProvider:
    return FakeProvider(root=tmp_path / "fake", python=sys.executable)


def _run(tmp_path: Path, fake: FakeProvider, *placements: Placement, quoter: SpotQuoter | None = None,
         **machine: Any) -> tuple[Any, Store]:
    spec = RunSpec(provider="local", machine=machine)
    suite = load_suite("smoke")
    plan = Plan(spec, suite, dict(suite.params), placements, 1, ())
    store = Store(tmp_path / "home")
    ctx = RunContext(store=store, home=tmp_path / "home", reporter=QuietReporter(),
                     provider_factory=lambda name: fake, spot_quoter=lambda name: quoter,
                     poll_interval_s=0.05)
    return execute_plan(plan, ctx), store


def _launch_events(store: Store, run_id: str) -> list[tuple[str | None, str | None]]:
    return [(e.outcome, e.detail) for e in store.events(run_id) if e.step == "launch"]


def test_a_capacity_error_fails_over_to_the_next_placement_and_bills_what_the_first_attempt_left(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    fake.launch_faults["gpu.big"] = LaunchFault(CapacityError("InsufficientInstanceCapacity in lab-1a"),
                                                create_first=True)
    outcome, store = _run(tmp_path, fake, FIRST, SECOND)
    assert outcome.state == "succeeded", outcome.error
    [(first_outcome, first), (second_outcome, second)] = _launch_events(store, outcome.run_id)
    assert first_outcome == "failed" and "attempt 1" in first and "gpu.big" in first and "Insufficient" in first
    assert second_outcome == "ok" and "attempt 2" in second and "gpu.small" in second
    assert [p.instance_type for p in fake.launches] == ["gpu.big", "gpu.small"]
    rows = store.machines(outcome.run_id)
    assert [(r.attempt, r.state) for r in rows] == [(1, "terminated"), (2, "terminated")]
    assert fake.machines == {}  # the sweep and the teardown left nothing
    costs = store.costs(outcome.run_id)
    by_machine: dict[str, float] = {}
    for row in costs:
        by_machine[row.machine_id] = by_machine.get(row.machine_id, 0.0) + row.amount_usd
    first_id, second_id = rows[0].machine_id, rows[1].machine_id
    assert by_machine[first_id] == pytest.approx(0.06)  # 60 s minimum at $3.6/h
    assert by_machine[second_id] == pytest.approx(0.03)  # 60 s minimum at $1.8/h
    assert store.get_run(outcome.run_id).cost_usd == pytest.approx(0.09)
    assert outcome.cost_usd == pytest.approx(0.09)


def test_a_quota_error_is_swept_and_billed_but_never_fails_over(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    fake.launch_faults["gpu.big"] = LaunchFault(QuotaError("VcpuLimitExceeded: raise \"P instances\""),
                                                create_first=True)
    outcome, store = _run(tmp_path, fake, FIRST, SECOND)
    assert outcome.state == "failed" and "VcpuLimitExceeded" in (outcome.error or "")
    assert [p.instance_type for p in fake.launches] == ["gpu.big"]
    assert fake.machines == {}  # what the attempt left was swept
    assert store.get_run(outcome.run_id).cost_usd == pytest.approx(0.06)


def test_a_failed_attempt_found_by_a_listing_without_prices_is_billed_at_the_attempt_s_price(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    fake.list_prices = False  # as EC2's DescribeInstances: the type, never the price
    fake.launch_faults["gpu.big"] = LaunchFault(CapacityError("InsufficientInstanceCapacity"), create_first=True)
    outcome, store = _run(tmp_path, fake, FIRST, SECOND)
    assert outcome.state == "succeeded", outcome.error
    first = store.machines(outcome.run_id)[0].machine_id
    assert sum(r.amount_usd for r in store.costs(outcome.run_id) if r.machine_id == first) == pytest.approx(0.06)


def test_each_attempt_boots_its_own_placement_s_image(tmp_path: Path, fake: FakeProvider, payload: None) -> None:
    fake.launch_faults["gpu.big"] = LaunchFault(CapacityError("InsufficientInstanceCapacity"))
    outcome, _ = _run(tmp_path, fake, replace(FIRST, image="img-lab-1"), replace(SECOND, image="img-lab-2"))
    assert outcome.state == "succeeded", outcome.error
    assert fake.images == ["img-lab-1", "img-lab-2"]  # an AMI is regional: the next region's row names its own


def test_a_launch_failing_after_its_machine_exists_is_torn_down_and_billed(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    fake.list_prices = False  # as a cloud's listing by tag
    fake.launch_faults["gpu.big"] = LaunchFault(ProviderError("instances ended while starting"), create_first=True)
    outcome, store = _run(tmp_path, fake, FIRST, SECOND)
    assert outcome.state == "failed" and "instances ended while starting" in (outcome.error or "")
    assert [p.instance_type for p in fake.launches] == ["gpu.big"]  # not a capacity error: no failover
    assert fake.machines == {}  # the teardown terminated it
    [row] = store.machines(outcome.run_id)
    assert row.state == "terminated"
    assert sum(r.amount_usd for r in store.costs(outcome.run_id)) == pytest.approx(0.06)  # 60 s at $3.6/h


def test_a_capacity_error_that_created_nothing_is_an_attempt_without_a_bill(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    fake.launch_faults["gpu.big"] = LaunchFault(CapacityError("InsufficientInstanceCapacity"))
    outcome, store = _run(tmp_path, fake, FIRST, SECOND)
    assert outcome.state == "succeeded"
    assert [(r.attempt, r.machine_id is None, r.state) for r in store.machines(outcome.run_id)] == [
        (1, True, "failed"), (2, False, "terminated")]
    assert {row.machine_id for row in store.costs(outcome.run_id)} == {store.machines(outcome.run_id)[1].machine_id}


def test_an_auth_error_never_fails_over(tmp_path: Path, fake: FakeProvider, payload: None) -> None:
    fake.launch_faults["gpu.big"] = LaunchFault(AuthError("AuthFailure: credentials rejected"))
    outcome, store = _run(tmp_path, fake, FIRST, SECOND)
    assert outcome.state == "failed" and "AuthFailure" in (outcome.error or "")
    assert [p.instance_type for p in fake.launches] == ["gpu.big"]
    assert len(_launch_events(store, outcome.run_id)) == 1


def test_failover_stops_at_max_attempts_and_names_every_attempt(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    fake.launch_faults["gpu.big"] = LaunchFault(CapacityError("no gpu.big"))
    fake.launch_faults["gpu.small"] = LaunchFault(CapacityError("no gpu.small"))
    third = Placement(provider="fake", instance_type="gpu.other", price_per_hour=1.0)
    outcome, store = _run(tmp_path, fake, FIRST, SECOND, third, max_attempts=2)
    assert outcome.state == "failed"
    assert "2 attempt(s)" in (outcome.error or "") and "no gpu.big" in outcome.error and "no gpu.small" in outcome.error
    assert [p.instance_type for p in fake.launches] == ["gpu.big", "gpu.small"]
    assert store.get_run(outcome.run_id).state == "failed"


def test_a_failed_sweep_stops_failover(tmp_path: Path, fake: FakeProvider, payload: None) -> None:
    fake.launch_faults["gpu.big"] = LaunchFault(CapacityError("no capacity"), create_first=True)
    fake.list_error = RuntimeError("DescribeInstances throttled")
    outcome, store = _run(tmp_path, fake, FIRST, SECOND)
    assert outcome.state == "failed"
    assert "not trying other placements" in (outcome.error or "")
    assert [p.instance_type for p in fake.launches] == ["gpu.big"]
    assert store.get_run(outcome.run_id).state == "failed"


def test_a_foreign_exception_in_terminate_leaves_the_run_recorded_and_the_machine_listed_not_cleaned_up(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    fake.terminate_error = KeyError("InstanceIds")
    outcome, store = _run(tmp_path, fake, FIRST)
    run = store.get_run(outcome.run_id)
    assert run.state == "failed" and outcome.state == "failed"  # never left "running"
    assert "KeyError" in (run.error or "") and "cleanup_failed" in (run.error or "")
    [machine] = store.machines(outcome.run_id)
    assert machine.state == "cleanup_failed"
    assert run.cost_usd == pytest.approx(0.06)  # priced all the same: the machine is still up
    assert store.machines(outcome.run_id, live_only=True)  # `orchestrate down` will find it
    assert store.events(outcome.run_id)[-1].step == "record"


def test_a_spot_quota_error_falls_back_to_on_demand_skipping_the_other_spot_placements(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    from dataclasses import replace

    spot_here = replace(FIRST, instance_type="gpu.spot", spot=True, price_per_hour=1.0)
    spot_there = replace(spot_here, instance_type="gpu.spot2", region="lab-2")
    fake.launch_faults["gpu.spot"] = LaunchFault(QuotaError("MaxSpotInstanceCountExceeded"))
    outcome, store = _run(tmp_path, fake, spot_here, spot_there, SECOND)
    assert outcome.state == "succeeded", outcome.error
    assert [p.instance_type for p in fake.launches] == ["gpu.spot", "gpu.small"]  # gpu.spot2 never asked


SPOT_REFUSED = ("EC2 API in lab-1 (lab-1a) refused RunInstances: SpotMaxPriceTooLow (HTTP 400): Your Spot request "
                "price of 0.05 is lower than the minimum required Spot request fulfillment price of 0.3125")


def _spot_in_two_regions() -> tuple[Placement, Placement]:
    """The same type on spot in two regions, at the same max price (as the planner ranks a --spot run)."""
    from dataclasses import replace

    here = replace(FIRST, instance_type="gpu.spot", spot=True, max_price=0.05, price_per_hour=1.0)
    return here, replace(here, region="lab-2")


def test_a_spot_refusal_goes_straight_to_on_demand_skipping_the_other_spot_placements(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    spot_here, spot_there = _spot_in_two_regions()
    fake.launch_faults["gpu.spot"] = LaunchFault(SpotRefused(SPOT_REFUSED), create_first=True)
    outcome, store = _run(tmp_path, fake, spot_here, spot_there, SECOND)
    assert outcome.state == "succeeded", outcome.error
    assert [(p.instance_type, p.region, p.spot) for p in fake.launches] == [
        ("gpu.spot", "lab-1", True), ("gpu.small", "lab-2", False)]  # the lab-2 spot placement never asked
    [(failed, first), (ok, second)] = _launch_events(store, outcome.run_id)
    assert failed == "failed" and "SpotMaxPriceTooLow" in (first or "")
    assert ok == "ok" and "attempt 3" in (second or "") and "gpu.small" in (second or "")
    [provision] = [e for e in store.events(outcome.run_id) if e.step == "provision"]
    assert "spot placements skipped: the spot market refused attempt 1 as a whole" in (provision.detail or "")
    assert fake.machines == {}  # what the refused attempt left was swept


def test_a_spot_refusal_without_an_on_demand_fallback_fails_the_run_with_that_one_line(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    spot_here, spot_there = _spot_in_two_regions()
    fake.launch_faults["gpu.spot"] = LaunchFault(SpotRefused(SPOT_REFUSED))
    outcome, store = _run(tmp_path, fake, spot_here, spot_there, spot=True, on_demand_fallback=False)
    assert outcome.state == "failed"
    assert outcome.error == SPOT_REFUSED  # the market's own line, not a list of attempts
    assert [p.region for p in fake.launches] == ["lab-1"]
    assert len(_launch_events(store, outcome.run_id)) == 1


def test_a_spot_capacity_error_still_tries_the_next_spot_placement(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    from dataclasses import replace

    spot_here, _ = _spot_in_two_regions()
    spot_there = replace(spot_here, instance_type="gpu.spot2", region="lab-2")
    fake.launch_faults["gpu.spot"] = LaunchFault(CapacityError("InsufficientInstanceCapacity in lab-1"))
    outcome, _ = _run(tmp_path, fake, spot_here, spot_there, SECOND)
    assert outcome.state == "succeeded", outcome.error
    assert [p.instance_type for p in fake.launches] == ["gpu.spot", "gpu.spot2"]  # only a market refusal skips spot


def test_spot_machines_are_priced_at_the_quote_the_launch_step_asks_for_and_billed_at_it(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    asked: list[Placement] = []

    def quoter(placement: Placement) -> PriceQuote:
        asked.append(placement)
        return PriceQuote("0.9000", 0.9, "2026-11-30T09:15:00+00:00", "the test's cloud")

    spot = replace(FIRST, instance_type="gpu.spot", spot=True, price_per_hour=1.0)
    outcome, store = _run(tmp_path, fake, spot, quoter=quoter)
    assert outcome.state == "succeeded", outcome.error
    assert [p.instance_type for p in asked] == ["gpu.spot"]  # once per launch, with the launched placement
    [row] = store.machines(outcome.run_id)
    assert row.machine is not None
    placement = row.machine.placement
    assert (placement.price_per_hour, placement.price_source, placement.price_quoted) == (0.9, "the test's cloud",
                                                                                          "0.9000")
    assert {line.price_per_hour for line in store.costs(outcome.run_id)} == {0.9}  # billed at the quote


def test_an_on_demand_launch_asks_no_quote_and_a_spot_launch_without_one_keeps_the_plan_s_price(
    tmp_path: Path, fake: FakeProvider, payload: None
) -> None:
    asked: list[Placement] = []

    def nothing(placement: Placement) -> None:
        asked.append(placement)

    outcome, _ = _run(tmp_path, fake, FIRST, quoter=nothing)
    assert outcome.state == "succeeded" and asked == []
    spot = replace(FIRST, instance_type="gpu.spot", spot=True, price_per_hour=1.0)
    outcome, store = _run(tmp_path, fake, spot, quoter=nothing)
    assert outcome.state == "succeeded" and len(asked) == 1
    [row] = store.machines(outcome.run_id)
    assert row.machine is not None and (row.machine.placement.price_per_hour, row.machine.placement.price_source) == (
        1.0, "catalog")



def test_a_quote_that_fails_never_fails_the_launch(tmp_path: Path, fake: FakeProvider, payload: None) -> None:
    def broken(placement: Placement) -> None:
        raise RuntimeError("the price API is down")

    spot = replace(FIRST, instance_type="gpu.spot", spot=True, price_per_hour=1.0)
    outcome, store = _run(tmp_path, fake, spot, quoter=broken)
    assert outcome.state == "succeeded", outcome.error
    [row] = store.machines(outcome.run_id)
    assert row.machine is not None and (row.machine.placement.price_per_hour, row.machine.placement.price_source) == (
        1.0, "catalog")
