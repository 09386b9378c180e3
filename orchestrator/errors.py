"""One exception root and its few families (DESIGN §6).

SDK and OS exceptions are translated into these once, at the provider or remote boundary; everything above
sees only these. The CLI prints ``str(error)`` and ``error.hint`` for an :class:`OrchestrateError` and exits
with ``error.exit_code``; a traceback means a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.machine import LeaseHolder


class OrchestrateError(Exception):
    """Root of every error Orchestrate expects and explains.

    Args:
        message: one line that says what went wrong, echoing the input that caused it.
        hint: one line that says what the user can do about it, or None.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class SpecError(OrchestrateError):
    """Bad user input: names the field, the value received (None: "not set") and what is accepted. Exit code 2."""

    exit_code = 2

    def __init__(
        self, field: str, received: object, accepted: str, *, hint: str | None = None, message: str | None = None
    ) -> None:
        self.field = field
        self.received = received
        self.accepted = accepted
        given = "not set" if received is None else f"received {received!r}"
        super().__init__(message or f"invalid {field}: {given}; accepted: {accepted}", hint=hint)


class UnknownRun(OrchestrateError):
    """A run id that the store does not hold. Exit code 2: the user typed it."""

    exit_code = 2


class ProviderError(OrchestrateError):
    """A provider could not make a machine exist, or go away."""


class CapacityError(ProviderError):
    """The provider has no capacity for the offer right now; another zone, region or type may."""


class SpotRefused(CapacityError):
    """The spot market refused this request as a whole — max price below the market, or the account's spot
    instance count — so no other spot placement is tried; on-demand placements the spec allows are."""


class BoxHeld(ProviderError):
    """Boxes the run needs are held by runs that died or ended without cleaning them up; never taken silently.

    Args:
        holders: box name → the run that holds it.
    """

    def __init__(self, holders: Mapping[str, LeaseHolder]) -> None:
        self.holders = holders
        runs = sorted({h.run_id for h in holders.values()})
        boxes = ", ".join(f"{box} (run {h.run_id}, {h.state})" for box, h in sorted(holders.items()))
        super().__init__(
            f"boxes held by runs that are no longer going on: {boxes}; a payload may still run there",
            hint=f"`orchestrate down {' '.join(runs)}` stops it and frees the box, or run again with --reclaim",
        )


class QuotaError(ProviderError):
    """The account's quota does not allow the request."""


class AuthError(ProviderError):
    """Credentials are missing, expired or not allowed to do this."""


class RemoteError(OrchestrateError):
    """Talking to a machine failed."""


class HostKeyMismatch(RemoteError):
    """The machine presented a host key other than the pinned one; nothing was sent."""


class ConnectTimeout(RemoteError):
    """The machine did not become reachable in time."""


class EnvironmentNotReady(RemoteError):
    """The machine lacks what the payload needs (Python, Keras, a backend)."""


class PayloadFailed(RemoteError):
    """The payload exited non-zero or wrote no valid results document."""


class RunInterrupted(OrchestrateError):
    """The run was stopped by SIGINT or SIGTERM; teardown has run. Exit code 130."""

    exit_code = 130


class StoreError(OrchestrateError):
    """The run store could not be read or written."""


class SSHAuthError(RemoteError):
    """The machine refused the SSH key, or the key could not be loaded; no command was run."""
