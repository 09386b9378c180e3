"""The follow loop polls less often while the payload is quiet, so its poll commands leave the payload's CPU alone."""

from __future__ import annotations

from orchestrator.remote.detached import DetachedProcess, PollResult, follow


class _ScriptedProcess(DetachedProcess):
    """Answers polls from a list: each entry is the log bytes of one poll; after the list, the payload exits."""

    def __init__(self, logs: list[bytes]) -> None:
        self.logs = list(logs)
        self.log_offset = 0

    def poll(self) -> PollResult:
        if self.logs:
            log = self.logs.pop(0)
            self.log_offset += len(log)
            return PollResult("running", None, log, self.log_offset)
        return PollResult("exited", 0, b"", self.log_offset)


def _waits(logs: list[bytes], **options: float) -> list[float]:
    waits: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    assert follow(_ScriptedProcess(logs), timeout_s=3600, on_output=lambda _: None, clock=lambda: now[0],
                  sleep=sleep, **options) == 0
    return waits


def test_quiet_polls_back_off_to_four_times_the_interval_and_output_brings_it_back() -> None:
    waits = _waits([b"start\n", b"", b"", b"", b"", b"epoch 1\n", b""], poll_interval_s=0.5)
    assert waits == [0.5, 1.0, 2.0, 2.0, 2.0, 0.5, 1.0]


def test_the_longest_wait_can_be_set() -> None:
    waits = _waits([b"", b"", b"", b""], poll_interval_s=0.05, max_poll_interval_s=0.1)
    assert waits == [0.1, 0.1, 0.1, 0.1]
