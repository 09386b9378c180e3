"""The SSH command reader keeps every byte a command wrote, however the transport thread's deliveries interleave
with its looks (CI once lost a whole results document this way under load: 'no results document')."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from orchestrator.remote.ssh import _read_until_exit


@pytest.fixture(autouse=True)
def _select_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The fake channels have no socket: a wait for data returns at once (as it would, data being there)."""
    waits: list[Any] = []

    def select(r: list[Any], w: list[Any], x: list[Any], timeout: float) -> tuple[list[Any], list[Any], list[Any]]:
        waits.append(timeout)
        return r, [], []

    monkeypatch.setattr("orchestrator.remote.ssh.select.select", select)
    return waits


class _Channel:
    """A channel whose transport thread delivers ``pending`` output and the end of file at the first look for the
    end: the worst interleaving, where everything arrives after an empty look for data."""

    def __init__(self, pending: list[bytes], pending_stderr: list[bytes] | None = None) -> None:
        self.buffer: list[bytes] = []
        self.stderr_buffer: list[bytes] = []
        self.pending, self.pending_stderr = pending, pending_stderr or []
        self._eof = False
        self.closed = False
        self.status_event = threading.Event()

    def _deliver(self) -> None:
        """The transport thread's delivery: the last chunks and the end of file together."""
        self.buffer += self.pending
        self.stderr_buffer += self.pending_stderr
        self._eof = True
        self.status_event.set()

    @property
    def eof_received(self) -> bool:
        if not self._eof:  # the last chunks and the end arrive together, as a loaded machine may see them
            self._deliver()
            return False  # this look came before the delivery
        return True

    def recv_ready(self) -> bool:
        return bool(self.buffer)

    def recv(self, _size: int) -> bytes:
        return self.buffer.pop(0)

    def recv_stderr_ready(self) -> bool:
        return bool(self.stderr_buffer)

    def recv_stderr(self, _size: int) -> bytes:
        return self.stderr_buffer.pop(0)


class _LateChannel(_Channel):
    """The delivery happens between the look for data and the look for the end (the old reader's blind spot)."""

    def recv_stderr_ready(self) -> bool:
        ready = super().recv_stderr_ready()
        if not self._eof and not ready:
            self._deliver()
        return ready

    @property
    def eof_received(self) -> bool:
        return self._eof


def test_output_delivered_with_the_end_of_file_is_kept() -> None:
    chunks = [b"x" * 65536 for _ in range(7)] + [b"present\n{}"]
    stdout, stderr, finished = _read_until_exit(_Channel(chunks, [b"warning\n"]), time.monotonic() + 5)
    assert (stdout, stderr, finished) == (b"".join(chunks), b"warning\n", True)


def test_output_delivered_between_the_look_for_data_and_the_look_for_the_end_is_kept() -> None:
    chunks = [b"23\nmeasuring\n", b"\n--marker--\npresent\n", b"{" + b" " * 400_000 + b"}"]
    stdout, stderr, finished = _read_until_exit(_LateChannel(chunks, [b"note\n"]), time.monotonic() + 5)
    assert (stdout, stderr, finished) == (b"".join(chunks), b"note\n", True)


def test_a_sink_receives_the_late_output() -> None:
    import io

    sink = io.BytesIO()
    chunks = [b"a" * 1000, b"b" * 1000]
    stdout, _, finished = _read_until_exit(_LateChannel(chunks), time.monotonic() + 5, sink)
    assert (stdout, sink.getvalue(), finished) == (b"", b"".join(chunks), True)
