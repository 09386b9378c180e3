"""A closed transport stays closed: no command, poll or upload after :meth:`close` reaches for the machine, whichever
thread runs it, until :meth:`connect` opens it again (an evicted spot machine is not dialled for minutes by the next
poll of the payload). A connection that merely drops still comes back."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ConnectTimeout, RemoteError
from orchestrator.remote.detached import DetachedProcess, follow
from orchestrator.remote.ssh import SSHTransport
from orchestrator.remote.transport import LocalTransport
from tests.integration.conftest import SSHServer
from tests.integration.test_ssh_transport import Factory, transport_to


def logins(server: SSHServer) -> int:
    return server.log().count("Accepted publickey")


def machine_gone(server: SSHServer, transport: SSHTransport) -> None:
    """Stops the machine's sshd and waits until the client has seen its connection end, so that the next command
    starts on a dead connection (a drop between two commands, not under one)."""
    server.stop()
    connection = transport._connection
    deadline = time.monotonic() + 30
    while connection is not None and connection.is_active():
        assert time.monotonic() < deadline, "the client never saw the connection end"
        time.sleep(0.01)


class FakeTime:
    """The transport's injected clock and sleep: a sleep advances the clock and is counted."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_command_after_close_raises_at_once_without_connecting(sshd: Factory, tmp_path: Path) -> None:
    server = sshd()
    fake = FakeTime()
    transport = transport_to(server, tmp_path / "known_hosts", clock=fake.clock, sleep=fake.sleep)
    assert transport.run("echo up").stdout == b"up\n"
    transport.close()
    for operation in (lambda: transport.run("echo again"), lambda: transport.put_bytes(b"x", str(tmp_path / "f")),
                      lambda: transport.read_to_file("echo again", tmp_path / "out")):
        with pytest.raises(RemoteError, match="was closed"):
            operation()
    assert logins(server) == 1  # the server is up and would have let it in: nothing asked
    assert fake.sleeps == [] and fake.now == 0.0
    assert not (tmp_path / "f").exists()


def test_a_payload_poll_after_the_machine_is_given_up_fails_the_follow_loop_at_its_first_poll(
    sshd: Factory, tmp_path: Path
) -> None:
    server = sshd()
    fake = FakeTime()
    transport = transport_to(server, tmp_path / "known_hosts", clock=fake.clock, sleep=fake.sleep)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    process = DetachedProcess(transport, str(run_dir))
    process.start(["sleep", "30"], {})
    server.stop()  # the machine is gone (its listener and every connection)...
    transport.close()  # ...and the eviction watch gave it up, between two polls
    polls: list[float] = []
    with pytest.raises(RemoteError, match="was closed"):
        follow(process, timeout_s=3600, on_output=lambda text: None, clock=fake.clock, sleep=polls.append)
    assert polls == [] and fake.sleeps == []  # no second poll, no reconnect backoff


def test_close_from_another_thread_stops_a_reconnect_already_under_way(sshd: Factory, tmp_path: Path) -> None:
    server = sshd()
    failed_attempt = threading.Event()
    looks = 0

    def clock() -> float:  # the reconnect loop reads the clock after each failed attempt
        nonlocal looks
        looks += 1
        if looks >= 3:
            failed_attempt.set()
        return time.monotonic()

    # Only close() can end this reconnect: the machine stays gone and the retry window is an hour.
    transport = transport_to(server, tmp_path / "known_hosts", clock=clock, command_retry_s=3600.0)
    assert transport.run("echo up").stdout == b"up\n"
    machine_gone(server, transport)
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            transport.run("echo poll")
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            errors.append(error)

    worker = threading.Thread(target=poll, daemon=True)
    worker.start()
    assert failed_attempt.wait(60), "the worker never tried to reconnect"
    closer = threading.Thread(target=transport.close, daemon=True)  # a close() stuck behind the reconnect fails too
    closer.start()
    worker.join(timeout=60)
    closer.join(timeout=60)
    assert not worker.is_alive() and not closer.is_alive(), "close() did not stop the reconnect"
    assert len(errors) == 1 and isinstance(errors[0], RemoteError) and not isinstance(errors[0], ConnectTimeout)
    assert "was closed" in str(errors[0])


def test_connect_after_close_opens_the_transport_again(sshd: Factory, tmp_path: Path) -> None:
    server = sshd()
    transport = transport_to(server, tmp_path / "known_hosts")
    transport.connect()
    transport.close()
    transport.connect()
    try:
        assert transport.run("echo back").stdout == b"back\n"
    finally:
        transport.close()
    assert logins(server) == 2


def test_a_connection_dropped_between_commands_comes_back(sshd: Factory, tmp_path: Path) -> None:
    server = sshd()
    transport = transport_to(server, tmp_path / "known_hosts")
    try:
        assert transport.run("echo one").stdout == b"one\n"
        assert server.cut_connections()
        assert transport.run("echo two").stdout == b"two\n"  # not closed: a drop reconnects
    finally:
        transport.close()
    assert logins(server) == 2


def test_a_machine_gone_between_commands_is_retried_for_command_retry_s_not_the_boot_timeout(
    sshd: Factory, tmp_path: Path
) -> None:
    server = sshd()
    fake = FakeTime()
    transport = transport_to(server, tmp_path / "known_hosts", clock=fake.clock, sleep=fake.sleep,
                             connect_timeout_s=300.0, command_retry_s=20.0)
    assert transport.run("echo up").stdout == b"up\n"
    machine_gone(server, transport)
    with pytest.raises(ConnectTimeout, match="again within 20 s"):
        transport.run("echo poll")
    assert 20.0 <= fake.now < 300.0  # the window of a dropped connection, not of a machine booting


def test_the_local_transport_refuses_commands_once_closed(tmp_path: Path) -> None:
    transport = LocalTransport()
    assert transport.run("echo up").stdout == b"up\n"
    transport.close()
    with pytest.raises(RemoteError, match="closed"):
        transport.run(f"touch {tmp_path / 'ran'}")
    with pytest.raises(RemoteError, match="closed"):
        transport.put_bytes(b"x", str(tmp_path / "put"))
    assert not (tmp_path / "ran").exists() and not (tmp_path / "put").exists()


@pytest.mark.parametrize("kind", ["ssh", "local"])
def test_read_to_file_streams_stdout_into_the_file_and_keeps_stderr(
    kind: str, sshd: Factory, tmp_path: Path
) -> None:
    transport: Any = transport_to(sshd(), tmp_path / "known_hosts") if kind == "ssh" else LocalTransport()
    out = tmp_path / "out"
    out.write_bytes(b"stale content that must go")
    try:
        # 3 MiB: many channel windows' worth, so the stream is read in chunks.
        result = transport.read_to_file("head -c 3145728 /dev/zero | tr '\\0' 'z'; echo oops >&2; exit 4", out)
    finally:
        transport.close()
    assert result.exit_code == 4 and result.stdout == b"" and result.stderr == b"oops\n"
    assert out.read_bytes() == b"z" * 3145728


@pytest.mark.parametrize("kind", ["ssh", "local"])
def test_put_file_replaces_the_file_atomically(kind: str, sshd: Factory, tmp_path: Path) -> None:
    transport: Any = transport_to(sshd(), tmp_path / "known_hosts") if kind == "ssh" else LocalTransport()
    source, target = tmp_path / "source", tmp_path / "target"
    source.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    target.write_bytes(b"old")
    sent: list[tuple[int, int]] = []
    try:
        transport.put_file(source, str(target), progress=lambda done, total: sent.append((done, total)))
    finally:
        transport.close()
    assert target.read_bytes() == source.read_bytes()
    assert not target.with_name("target.part").exists()
    assert sent[-1] == (source.stat().st_size, source.stat().st_size)
