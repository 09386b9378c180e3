"""Who may reach a cloud machine's port 22: the caller's own address as a /32 (or /128), or what ``--allow-cidr`` says.

Detection asks a public "what is my address" service; it is injectable, and when it fails the run is refused with
the flag to set — it never falls back to an open rule (0.0.0.0/0).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from orchestrator.errors import SpecError

CHECK_IP_URL = "https://checkip.amazonaws.com"
CHECK_TIMEOUT_S = 10.0


def parse_cidr(text: str, field: str = "--allow-cidr") -> str:
    """Returns the network in canonical form (an address alone becomes a /32 or /128).

    Raises:
        SpecError: not a network, host bits set, or open to every address.
    """
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        raise SpecError(field, text, "an IP address or network such as 203.0.113.7/32") from None
    if network.prefixlen == 0:
        raise SpecError(field, text, "a network smaller than the whole internet (SSH is never open to everyone)")
    return str(network)


def detect_public_address(url: str = CHECK_IP_URL, timeout_s: float = CHECK_TIMEOUT_S) -> str:
    """Asks a public service for this machine's public address.

    Raises:
        OSError: the service did not answer, or answered with something that is not an address.
    """
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - a fixed https URL
        text = response.read(64).decode("ascii", errors="replace").strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as error:
        raise OSError(f"{url} answered {text[:40]!r}, not an address") from error


def allowed_cidr(given: str | None, detect: Callable[[], str] = detect_public_address) -> str:
    """The CIDR that may reach port 22: the one given, else this machine's detected public address alone.

    Raises:
        SpecError: the given one is invalid, or none was given and the address could not be detected.
    """
    if given is not None:
        return parse_cidr(given)
    try:
        address = ipaddress.ip_address(detect())
    except (OSError, ValueError) as error:
        raise SpecError("--allow-cidr", None, "this computer's public address as a /32 (detecting it failed: "
                        f"{error}); SSH is never opened to everyone") from None
    return str(ipaddress.ip_network(f"{address}/{address.max_prefixlen}"))
