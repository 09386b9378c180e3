"""An eviction is confirmed by asking the provider until it stops listing the machine, within a bound."""

from __future__ import annotations

import threading

from orchestrator.eviction import EVICTION_CONFIRM_S, confirm_gone


class Listing:
    """A provider's listing that shows the machine for the first ``shown`` asks (``None``: always)."""

    def __init__(self, shown: int | None, error: Exception | None = None) -> None:
        self.shown, self.error, self.asks = shown, error, 0

    def __call__(self) -> bool:
        self.asks += 1
        if self.error is not None:
            raise self.error
        return self.shown is None or self.asks <= self.shown


def _gone(listing: Listing, cancel: threading.Event | None = None) -> bool:
    clock = [0.0]

    def tick() -> float:
        clock[0] += 0.5  # each look costs half a second of the fake clock
        return clock[0]

    stop = cancel or threading.Event()
    return confirm_gone(listing, clock=tick, wait=stop.wait, poll_s=0.0)


def test_a_machine_the_cloud_still_lists_for_a_while_is_found_gone() -> None:
    listing = Listing(shown=3)
    assert _gone(listing) is True
    assert listing.asks == 4  # a single look at once would have called this eviction a plain failure


def test_a_machine_still_listed_after_the_bound_is_not_an_eviction() -> None:
    listing = Listing(shown=None)
    assert _gone(listing) is False
    assert listing.asks >= EVICTION_CONFIRM_S / 1.0  # asked until the bound, then the failure stands


def test_a_provider_that_cannot_be_asked_leaves_the_failure_standing() -> None:
    assert _gone(Listing(shown=0, error=RuntimeError("throttled"))) is False


def test_a_stop_request_ends_the_wait() -> None:
    listing, cancel = Listing(shown=None), threading.Event()
    cancel.set()
    assert _gone(listing, cancel) is False and listing.asks == 1
