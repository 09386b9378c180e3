"""An eviction is confirmed by asking the provider until it stops listing the machine, within a bound."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from orchestrator.eviction import EVICTION_CONFIRM_S, _gone


class Listing:
    """A provider whose listing shows the machine for the first ``shown`` asks (``None``: always)."""

    def __init__(self, shown: int | None, error: Exception | None = None) -> None:
        self.shown, self.error, self.asks = shown, error, 0

    def list_machines(self, run_id: str) -> list[Any]:
        self.asks += 1
        if self.error is not None:
            raise self.error
        listed = self.shown is None or self.asks <= self.shown
        return [SimpleNamespace(id="i-1")] if listed else []


def _run(provider: Listing, clock: list[float]) -> Any:
    def tick() -> float:
        clock[0] += 0.5  # each look costs half a second of the fake clock
        return clock[0]

    ctx = SimpleNamespace(clock=tick, provider=lambda name: provider, eviction_poll_s=0.0)
    return SimpleNamespace(ctx=ctx, run_id="r-1", cancel=threading.Event())


def test_a_machine_the_cloud_still_lists_for_a_while_is_found_gone() -> None:
    provider = Listing(shown=3)
    assert _gone(_run(provider, [0.0]), "aws", "i-1") is True
    assert provider.asks == 4  # a single look at once would have called this eviction a plain failure


def test_a_machine_still_listed_after_the_bound_is_not_an_eviction() -> None:
    provider = Listing(shown=None)
    assert _gone(_run(provider, [0.0]), "aws", "i-1") is False
    assert provider.asks >= EVICTION_CONFIRM_S / 1.0  # asked until the bound, then the failure stands


def test_a_provider_that_cannot_be_asked_leaves_the_failure_standing() -> None:
    assert _gone(_run(Listing(shown=0, error=RuntimeError("throttled")), [0.0]), "aws", "i-1") is False


def test_a_stop_request_ends_the_wait() -> None:
    run = _run(Listing(shown=None), [0.0])
    run.cancel.set()
    assert _gone(run, "aws", "i-1") is False and run.ctx.provider("aws").asks == 1
