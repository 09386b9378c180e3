"""The SSH transport against real OpenSSH sshd on 127.0.0.1 (no mocks of paramiko)."""

from __future__ import annotations

import re
import shlex
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ConnectTimeout, HostKeyMismatch, RemoteError, SpecError, SSHAuthError
from orchestrator.remote.ssh import SSHTarget, SSHTransport, fingerprint
from tests.integration.conftest import SSHServer, free_port, write_key_pair

Factory = Callable[..., SSHServer]


def transport_to(server: SSHServer, known_hosts: Path, **options: Any) -> SSHTransport:
    """A transport to ``server``, its host key pinned unless ``host_key`` or ``trust_on_first_use`` say otherwise."""
    target_fields = {
        key: options.pop(key) for key in ("host_key", "trust_on_first_use", "key_path") if key in options
    }
    target_fields.setdefault("host_key", server.host_key)
    target_fields.setdefault("key_path", server.client_key_path)
    target = SSHTarget(host=server.host, port=server.port, user=server.user, **target_fields)
    return SSHTransport(target, known_hosts=known_hosts, **options)


def wait_for_log(server: SSHServer, text: str, *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"sshd never logged {text!r}:\n{server.log()}"
        time.sleep(0.02)


# Commands ---------------------------------------------------------------------------------------------------------


def test_run_returns_exit_code_stdout_and_stderr(sshd: Factory, tmp_path: Path) -> None:
    with transport_to(sshd(), tmp_path / "known_hosts") as transport:
        result = transport.run("printf 'out\\n'; printf 'err\\n' >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")


def test_large_output_on_both_streams_does_not_stall(sshd: Factory, tmp_path: Path) -> None:
    with transport_to(sshd(), tmp_path / "known_hosts") as transport:
        result = transport.run("head -c 6000000 /dev/zero; head -c 5000000 /dev/zero >&2", timeout=30)
    assert (result.exit_code, len(result.stdout), len(result.stderr)) == (0, 6_000_000, 5_000_000)


def test_hostile_argument_quoted_with_shlex_executes_nothing_extra(sshd: Factory, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    hostile = "resnet; touch pwned1 && $(touch pwned2) `touch pwned3` | touch pwned4 \n touch pwned5 '\""
    with transport_to(sshd(), tmp_path / "known_hosts") as transport:
        result = transport.run(f"cd {shlex.quote(str(workdir))} && printf %s {shlex.quote(hostile)}")
        unquoted = transport.run(f"cd {shlex.quote(str(workdir))} && echo resnet; touch control")
    assert result.exit_code == 0 and result.stdout == hostile.encode()
    # The same shell does run a second command when it is not quoted: the check above could fail.
    assert unquoted.exit_code == 0
    assert sorted(path.name for path in workdir.iterdir()) == ["control"]


def test_run_timeout_raises_and_the_next_command_works(sshd: Factory, tmp_path: Path) -> None:
    with transport_to(sshd(), tmp_path / "known_hosts") as transport:
        started = time.monotonic()
        with pytest.raises(RemoteError, match="timed out after 0.5 s"):
            transport.run("sleep 5", timeout=0.5)
        assert time.monotonic() - started < 3
        assert transport.run("echo still here").stdout == b"still here\n"


def test_command_killed_by_a_signal_is_reported_not_run_again(sshd: Factory, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    with transport_to(sshd(), tmp_path / "known_hosts") as transport:
        result = transport.run(f"echo x >> {shlex.quote(str(counter))}; kill -9 $$")
    assert result.exit_code == -1
    assert counter.read_text() == "x\n"


# Host keys --------------------------------------------------------------------------------------------------------


def test_different_host_key_is_refused_with_both_fingerprints_and_nothing_sent(
    sshd: Factory, tmp_path: Path, make_host_key: Callable[..., Path]
) -> None:
    pinned_path = make_host_key()
    pinned = pinned_path.with_name(pinned_path.name + ".pub").read_text().strip()
    server = sshd()  # presents a key of its own, not the pinned one
    marker = tmp_path / "marker"
    transport = transport_to(server, tmp_path / "known_hosts", host_key=pinned)

    with pytest.raises(HostKeyMismatch) as refused:
        transport.run(f"touch {shlex.quote(str(marker))}")

    message = str(refused.value)
    assert fingerprint(pinned) in message and server.host_key_fingerprint in message
    assert "nothing was sent" in message
    assert transport.host_key_fingerprint == server.host_key_fingerprint
    wait_for_log(server, "[preauth]")  # the refused connection has ended on the server's side
    # Control: the same command through a correctly pinned transport is authenticated, run and logged.
    with transport_to(server, tmp_path / "known_hosts") as control:
        assert control.run("true").exit_code == 0
    log = server.log()
    assert log.count("Accepted publickey") == 1, log
    assert log.count("Starting session") == 1, log
    assert not marker.exists()


def test_fingerprint_only_pin_connects_and_a_wrong_one_is_refused(sshd: Factory, tmp_path: Path) -> None:
    server = sshd()
    with transport_to(server, tmp_path / "known_hosts", host_key=server.host_key_fingerprint) as transport:
        assert transport.run("echo pinned").stdout == b"pinned\n"
        assert transport.host_key_fingerprint == server.host_key_fingerprint

    wrong = "SHA256:" + "A" * 43
    with pytest.raises(HostKeyMismatch) as refused:
        transport_to(server, tmp_path / "known_hosts", host_key=wrong).connect()
    assert wrong in str(refused.value) and server.host_key_fingerprint in str(refused.value)
    wait_for_log(server, "[preauth]")
    assert server.log().count("Accepted publickey") == 1


def test_trust_on_first_use_records_the_key_and_refuses_a_changed_one(sshd: Factory, tmp_path: Path) -> None:
    known_hosts = tmp_path / "home" / "known_hosts"
    first = sshd()
    with transport_to(first, known_hosts, host_key=None, trust_on_first_use=True) as transport:
        assert transport.run("echo first").stdout == b"first\n"
    assert known_hosts.read_text() == f"[127.0.0.1]:{first.port} {first.host_key}\n"
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
    assert stat.S_IMODE(known_hosts.parent.stat().st_mode) == 0o700

    with transport_to(first, known_hosts, host_key=None, trust_on_first_use=True) as again:
        assert again.run("true").exit_code == 0
    assert known_hosts.read_text().count("\n") == 1  # pinned now, not recorded twice

    first.stop()
    rebuilt = sshd(port=first.port)  # same address, new host key
    with pytest.raises(HostKeyMismatch) as refused:
        transport_to(rebuilt, known_hosts, host_key=None, trust_on_first_use=True).connect()
    message = str(refused.value)
    assert first.host_key_fingerprint in message and rebuilt.host_key_fingerprint in message
    assert str(known_hosts) in message
    assert known_hosts.read_text() == f"[127.0.0.1]:{first.port} {first.host_key}\n"
    wait_for_log(rebuilt, "[preauth]")
    assert "Accepted publickey" not in rebuilt.log()


def test_a_key_already_in_known_hosts_counts_as_pinned(sshd: Factory, tmp_path: Path) -> None:
    server = sshd()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{server.host}]:{server.port} {server.host_key}\n")
    with transport_to(server, known_hosts, host_key=None) as transport:
        assert transport.run("echo known").stdout == b"known\n"


def test_no_pin_and_no_trust_on_first_use_is_refused_before_connecting(sshd: Factory, tmp_path: Path) -> None:
    server = sshd()
    connections_before = server.log().count("Connection from")
    transport = transport_to(server, tmp_path / "known_hosts", host_key=None)
    with pytest.raises(RemoteError, match=f"no pinned host key for 127.0.0.1:{server.port}"):
        transport.run("true")
    time.sleep(0.2)
    assert server.log().count("Connection from") == connections_before


def test_rsa_host_key_and_rsa_client_key(
    sshd: Factory, tmp_path: Path, make_host_key: Callable[..., Path]
) -> None:
    client_key = tmp_path / "id_rsa"
    write_key_pair(client_key, "rsa")
    server = sshd(host_key_path=make_host_key("rsa"), authorized_key=client_key)
    assert server.host_key.startswith("ssh-rsa ")
    with transport_to(server, tmp_path / "known_hosts", key_path=client_key) as transport:
        assert transport.run("echo rsa").stdout == b"rsa\n"
        assert transport.host_key_fingerprint == server.host_key_fingerprint


def test_known_hosts_with_keys_of_several_types_accepts_the_one_the_server_has(
    sshd: Factory, tmp_path: Path, make_host_key: Callable[..., Path]
) -> None:
    server = sshd(host_key_path=make_host_key("rsa"))
    other_path = make_host_key("ed25519")  # a type this server does not have, listed first
    other = other_path.with_name(other_path.name + ".pub").read_text().strip()
    known_hosts = tmp_path / "known_hosts"
    name = f"[{server.host}]:{server.port}"
    known_hosts.write_text(f"{name} {other}\n{name} {server.host_key}\n")
    with transport_to(server, known_hosts, host_key=None) as transport:
        assert transport.run("echo rsa").stdout == b"rsa\n"


def test_fingerprint_matches_ssh_keygen(make_host_key: Callable[..., Path]) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    for kind in ("ed25519", "rsa"):
        path = make_host_key(kind)
        public = path.with_name(path.name + ".pub")
        listed = subprocess.run(["ssh-keygen", "-lf", str(public)], capture_output=True, text=True, check=True)
        assert fingerprint(public.read_text()) == listed.stdout.split()[1]


def test_malformed_pin_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="host_key"):
        SSHTarget("127.0.0.1", 22, "root", Path("/nonexistent"), host_key="ssh-ed25519 not-base64!")


# Authentication ---------------------------------------------------------------------------------------------------


def test_refused_client_key_raises_auth_error_without_retrying(sshd: Factory, tmp_path: Path) -> None:
    other_key = tmp_path / "other_key"
    write_key_pair(other_key)
    server = sshd(authorized_key=other_key)  # does not accept the session's client key
    started = time.monotonic()
    with pytest.raises(SSHAuthError, match=re.escape(f"{server.user}@127.0.0.1:{server.port}")):
        transport_to(server, tmp_path / "known_hosts", connect_timeout_s=30).connect()
    assert time.monotonic() - started < 5


# Connecting while the machine boots -------------------------------------------------------------------------------


def test_connect_waits_for_sshd_that_starts_late(
    sshd: Factory, client_key: Path, tmp_path: Path, make_host_key: Callable[..., Path]
) -> None:
    port = free_port()
    host_key_path = make_host_key()
    host_key = host_key_path.with_name(host_key_path.name + ".pub").read_text().strip()
    failures: list[BaseException] = []

    def start_late() -> None:
        try:
            sshd(port=port, host_key_path=host_key_path)
        except BaseException as error:  # reported by the test below
            failures.append(error)

    boot = threading.Timer(1.0, start_late)
    target = SSHTarget("127.0.0.1", port, "root", client_key, host_key=host_key)
    transport = SSHTransport(target, known_hosts=tmp_path / "known_hosts", connect_timeout_s=15)
    started = time.monotonic()
    boot.start()
    try:
        transport.connect()
        assert transport.run("echo booted").stdout == b"booted\n"
    finally:
        boot.join()
        transport.close()
    assert not failures
    assert 1.0 <= time.monotonic() - started < 10


def test_connect_gives_up_after_the_timeout_naming_host_and_last_error(tmp_path: Path, client_key: Path) -> None:
    port = free_port()
    target = SSHTarget("127.0.0.1", port, "root", client_key, host_key="SHA256:" + "A" * 43)
    transport = SSHTransport(target, known_hosts=tmp_path / "known_hosts", connect_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(ConnectTimeout) as timed_out:
        transport.connect()
    elapsed = time.monotonic() - started
    assert 1.9 <= elapsed < 4
    assert f"127.0.0.1:{port}" in str(timed_out.value)
    assert "Unable to connect" in str(timed_out.value)  # the last error, as paramiko words a refused connection


def test_connect_backoff_doubles_up_to_a_cap_on_the_injected_clock(tmp_path: Path, client_key: Path) -> None:
    now = [1000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    target = SSHTarget("127.0.0.1", free_port(), "root", client_key, host_key="SHA256:" + "A" * 43)
    transport = SSHTransport(
        target, known_hosts=tmp_path / "known_hosts", connect_timeout_s=60, clock=lambda: now[0], sleep=sleep
    )
    started = time.monotonic()
    with pytest.raises(ConnectTimeout):
        transport.connect()
    assert sleeps[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert max(sleeps) == 10.0 and sum(sleeps) == pytest.approx(60.0)
    assert time.monotonic() - started < 5  # nothing slept for real


# Dropped connections ----------------------------------------------------------------------------------------------


def test_next_run_reconnects_after_the_connection_is_cut(sshd: Factory, tmp_path: Path) -> None:
    server = sshd()
    with transport_to(server, tmp_path / "known_hosts") as transport:
        assert transport.run("echo before").stdout == b"before\n"
        first_connection = server.connection_pids()
        assert len(first_connection) == 1
        assert server.cut_connections()
        assert transport.run("echo after").stdout == b"after\n"
        assert server.connection_pids() and server.connection_pids() != first_connection
    assert server.log().count("Accepted publickey") == 2


def test_command_cut_mid_run_is_run_again_on_a_new_connection(sshd: Factory, tmp_path: Path) -> None:
    server = sshd()
    counter = tmp_path / "runs"
    results: list[Any] = []
    with transport_to(server, tmp_path / "known_hosts") as transport:
        command = f"echo x >> {shlex.quote(str(counter))}; sleep 1; echo done"
        worker = threading.Thread(target=lambda: results.append(transport.run(command, timeout=30)))
        worker.start()
        deadline = time.monotonic() + 10
        while not counter.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.cut_connections()
        worker.join(timeout=30)
    assert results and results[0].exit_code == 0 and results[0].stdout == b"done\n"
    assert counter.read_text() == "x\nx\n"


# Uploads ----------------------------------------------------------------------------------------------------------


def test_put_bytes_replaces_the_file_atomically_and_reports_progress(sshd: Factory, tmp_path: Path) -> None:
    target = tmp_path / "bundle.tar"
    target.write_bytes(b"old")
    data = bytes(range(256)) * 12_289  # ~3 MB, not a multiple of the SFTP chunk
    calls: list[tuple[int, int]] = []
    seen_mid_upload: list[tuple[bytes, bool]] = []

    def progress(sent: int, total: int) -> None:
        if not calls:
            seen_mid_upload.append((target.read_bytes(), target.with_name("bundle.tar.part").exists()))
        calls.append((sent, total))

    with transport_to(sshd(), tmp_path / "known_hosts") as transport:
        transport.put_bytes(data, str(target), progress=progress)
    assert target.read_bytes() == data
    assert not target.with_name("bundle.tar.part").exists()
    assert seen_mid_upload == [(b"old", True)]  # while bytes were moving, the old file was whole
    assert len(calls) > 2 and calls[-1] == (len(data), len(data))
    assert [sent for sent, _ in calls] == sorted(sent for sent, _ in calls)
    assert {total for _, total in calls} == {len(data)}


def test_put_bytes_into_a_missing_directory_names_the_path(sshd: Factory, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "file"
    with transport_to(sshd(), tmp_path / "known_hosts") as transport, pytest.raises(RemoteError, match=str(missing)):
        transport.put_bytes(b"data", str(missing))


def test_close_during_a_command_ends_it_without_running_it_again(sshd: Factory, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    errors: list[BaseException] = []
    transport = transport_to(sshd(), tmp_path / "known_hosts")

    def run() -> None:
        try:
            transport.run(f"echo x >> {shlex.quote(str(counter))}; sleep 2")
        except RemoteError as error:
            errors.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    # Written, not only created: `>>` makes the file before echo writes to it, and a close in between would end the
    # command before its one write.
    while not (counter.exists() and counter.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    transport.close()
    worker.join(timeout=10)
    assert len(errors) == 1 and "was closed" in str(errors[0])
    assert counter.read_text() == "x\n"
