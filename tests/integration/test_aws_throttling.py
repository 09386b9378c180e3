"""A throttled RunInstances (RequestLimitExceeded) against moto's EC2 in-process: retried with jittered backoff,
a bounded number of times, while a capacity refusal still moves to the next zone at once. The throttling is
injected into the provider's own clients (FACTS: ``before-call`` hooks); the waits go to an injected sleep."""

from __future__ import annotations

import pytest

from orchestrator.clouds import aws
from orchestrator.errors import CapacityError, ProviderError
from orchestrator.providers.aws.instance import AwsProvider
from tests.fakes import aws as aws_fakes
from tests.fakes.aws import HookedClients, hook_run_instances, launch_request

moto_aws = aws_fakes.moto_aws  # the fixtures
sleeps = aws_fakes.sleeps
clients = aws_fakes.clients
provider = aws_fakes.provider
zones = aws_fakes.zones

THROTTLED = ("RequestLimitExceeded", "Request limit exceeded.")
NO_CAPACITY = ("InsufficientInstanceCapacity", "We currently do not have sufficient g5.xlarge capacity")


def _answers(clients: HookedClients, answers: list[tuple[str, str] | None],
             tokens: list[str] | None = None) -> list[str]:
    """RunInstances answers these refusals in turn (None: let it through to moto), then lets every call through;
    returns the zone of each call (and puts each call's client token in ``tokens``)."""
    return hook_run_instances(clients, lambda zone: answers.pop(0) if answers else None, tokens)


def test_a_throttled_run_instances_is_retried_with_jittered_backoff_and_launches(
    provider: AwsProvider, clients: HookedClients, sleeps: list[float], zones: list[str]
) -> None:
    tokens: list[str] = []
    asked = _answers(clients, [THROTTLED, THROTTLED, THROTTLED], tokens)
    [machine] = provider.launch(launch_request("r-throttled"))
    assert asked == [zones[0]] * 4  # the same zone again: throttling says nothing of capacity
    assert len(set(tokens)) == 1 and tokens[0]  # one client token: a retry can never launch a second set
    assert machine.placement.zone == zones[0]
    waits = sleeps[:3]
    assert len(waits) == 3 and all(0 <= wait <= cap for wait, cap in zip(waits, (1.0, 2.0, 4.0), strict=True))
    assert [m.id for m in provider.list_machines(run_id="r-throttled")] == [machine.id]


def test_throttling_that_outlasts_the_retries_fails_with_one_line_saying_how_long_it_tried(
    provider: AwsProvider, clients: HookedClients, sleeps: list[float], zones: list[str]
) -> None:
    asked = _answers(clients, [THROTTLED] * 100)
    with pytest.raises(ProviderError, match="RequestLimitExceeded") as caught:
        provider.launch(launch_request("r-rate"))
    assert not isinstance(caught.value, CapacityError)  # no failover: the rate limit is the account's, not a zone's
    assert asked == [zones[0]] * aws.THROTTLE_TRIES
    assert len(sleeps) == aws.THROTTLE_TRIES - 1 and sum(sleeps) <= 31.0
    message = str(caught.value)
    assert f"still throttled after {aws.THROTTLE_TRIES} tries over {sum(sleeps):.0f} s" in message
    assert "\n" not in message and "rate of API calls" in (caught.value.hint or "")
    assert provider.list_machines(run_id="r-rate") == []


def test_a_capacity_error_moves_to_the_next_zone_without_waiting(
    provider: AwsProvider, clients: HookedClients, sleeps: list[float], zones: list[str]
) -> None:
    asked = _answers(clients, [NO_CAPACITY])
    [machine] = provider.launch(launch_request("r-capacity"))
    assert asked == zones[:2] and machine.placement.zone == zones[1]
    assert sleeps == []


def test_a_throttled_zone_then_a_full_one_waits_only_for_the_throttling(
    provider: AwsProvider, clients: HookedClients, sleeps: list[float], zones: list[str]
) -> None:
    tokens: list[str] = []
    asked = _answers(clients, [THROTTLED, NO_CAPACITY], tokens)
    [machine] = provider.launch(launch_request("r-both"))
    assert asked == [zones[0], zones[0], zones[1]] and machine.placement.zone == zones[1]
    assert tokens[0] == tokens[1] != tokens[2]  # another zone is another request
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 1.0


def test_the_backoff_doubles_up_to_its_cap_and_takes_a_random_part_of_it() -> None:
    assert [aws.throttle_delay_s(retry, jitter=lambda: 0.999) for retry in range(1, 8)] == pytest.approx(
        [0.999, 1.998, 3.996, 7.992, 15.984, 19.98, 19.98])
    assert aws.throttle_delay_s(3, jitter=lambda: 0.25) == 1.0
    assert sum(aws.throttle_delay_s(retry, jitter=lambda: 0.999) for retry in range(1, aws.THROTTLE_TRIES)) <= 31.0
