"""A stop request that a signal handler sets and a suite honours at safe points.

Raising straight from a SIGTERM handler can land inside TensorFlow's own Python/C++ code and crash the
process (seen here as a segfault part-way through ``fit``). So the handler only records the request, and the
suite raises ``TerminatedError`` where an exception is ordinary: phase boundaries and Keras batch ends.
"""

from __future__ import annotations

from keras_bench.errors import TerminatedError


class StopRequest:
    """Whether, and why, the run was asked to stop."""

    def __init__(self) -> None:
        """Creates a request that has not been made."""
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        """Asks the run to stop at its next safe point; safe to call from a signal handler.

        Args:
            reason: Becomes the TerminatedError message, e.g. ``"received SIGTERM"``.
        """
        self.reason = reason

    def check(self) -> None:
        """Raises TerminatedError when a stop was requested; call it only where an exception is safe.

        Raises:
            TerminatedError: With the reason given to ``request``.
        """
        if self.reason is not None:
            raise TerminatedError(self.reason)
