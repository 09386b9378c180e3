"""A reporter that tells nobody: for lifecycle runs driven in-process (tests, benches)."""

from __future__ import annotations


class QuietReporter:
    """The lifecycle's Reporter protocol, saying nothing."""

    def step(self, run_id: str, step: str, outcome: str, detail: str | None) -> None:
        """A step started or ended: not shown."""

    def output(self, text: str) -> None:
        """Payload log text: not shown."""

    def upload(self, host: str, sent: int, total: int) -> None:
        """Upload progress: not shown."""
