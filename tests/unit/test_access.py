"""Who may reach a cloud machine's port 22: never everyone, and never by falling back."""

from __future__ import annotations

import pytest

from orchestrator.access import allowed_cidr, parse_cidr
from orchestrator.errors import SpecError


def test_a_given_address_or_network_is_kept_in_canonical_form() -> None:
    assert allowed_cidr("203.0.113.7") == "203.0.113.7/32"
    assert allowed_cidr("198.51.100.0/24") == "198.51.100.0/24"
    assert parse_cidr("2001:db8::1") == "2001:db8::1/128"


@pytest.mark.parametrize("text", ["0.0.0.0/0", "::/0", "10.0.0.1/24", "not-an-address", ""])
def test_an_open_or_malformed_network_is_refused(text: str) -> None:
    with pytest.raises(SpecError, match="--allow-cidr"):
        parse_cidr(text)


def test_without_a_given_network_the_detected_address_alone_is_allowed() -> None:
    assert allowed_cidr(None, detect=lambda: "192.0.2.44") == "192.0.2.44/32"
    assert allowed_cidr(None, detect=lambda: "2001:db8::7") == "2001:db8::7/128"


def test_when_detection_fails_the_run_is_refused_never_opened_to_everyone() -> None:
    def offline() -> str:
        raise OSError("network unreachable")

    with pytest.raises(SpecError, match=r"--allow-cidr.*detecting it failed: network unreachable"):
        allowed_cidr(None, detect=offline)
    with pytest.raises(SpecError, match="--allow-cidr"):
        allowed_cidr(None, detect=lambda: "<html>captive portal</html>")
