"""Reaching a machine through a bastion (ProxyJump) against two real OpenSSH sshd on 127.0.0.1."""

from __future__ import annotations

import re
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import HostKeyMismatch, SpecError, SSHAuthError
from orchestrator.inventory.model import load_inventory
from orchestrator.machine import Access
from orchestrator.remote.connect import known_hosts_path, transport_to
from orchestrator.remote.ssh import SSHTarget, SSHTransport, fingerprint
from tests.integration.conftest import SSHServer, free_port, write_key_pair

Factory = Callable[..., SSHServer]


def target_of(server: SSHServer, **fields: Any) -> SSHTarget:
    """The server as an SSH target, its host key pinned unless ``host_key`` or ``trust_on_first_use`` say otherwise."""
    fields.setdefault("host_key", server.host_key)
    fields.setdefault("key_path", server.client_key_path)
    return SSHTarget(host=server.host, port=server.port, user=server.user, **fields)


def public_line(private_key: Path) -> str:
    return private_key.with_name(private_key.name + ".pub").read_text().strip()


def logins(server: SSHServer) -> int:
    return server.log().count("Accepted publickey")


def connections(server: SSHServer) -> list[int]:
    """The client ports of the TCP connections sshd accepted, the fixture's readiness probe included."""
    return [int(port) for port in re.findall(r"Connection from 127\.0\.0\.1 port (\d+) on ", server.log())]


def wait_until(condition: Callable[[], bool], what: str, *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def socket_owner(local_port: int) -> int | None:
    """The pid of the process that holds the TCP socket bound to ``local_port`` on this machine, if any."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                inodes.add(f"socket:[{fields[9]}]")
    for descriptor in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if str(descriptor.readlink()) in inodes:
                return int(descriptor.parent.parent.name)
        except OSError:
            continue
    return None


def ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
        chain.append(pid)
    return chain


# Through the bastion ----------------------------------------------------------------------------------------------


def test_commands_and_uploads_reach_the_machine_through_the_bastion(sshd: Factory, tmp_path: Path) -> None:
    bastion, machine = sshd(), sshd()
    uploaded = tmp_path / "bundle.tar"
    data = bytes(range(256)) * 4_000
    probes = len(connections(machine))
    target = target_of(machine, proxy_jump=target_of(bastion))
    with SSHTransport(target, known_hosts=tmp_path / "known_hosts") as transport:
        result = transport.run("printf 'out\\n'; printf 'err\\n' >&2; exit 3")
        transport.put_bytes(data, str(uploaded))
        assert transport.host_key_fingerprint == machine.host_key_fingerprint
        # The machine's sshd saw its one client connect from a socket the bastion's sshd holds, not this test.
        arrived = connections(machine)[probes:]
        assert len(arrived) == 1
        owner = socket_owner(arrived[0])
        assert owner is not None and bastion.pid in ancestors(owner)
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert uploaded.read_bytes() == data
    assert (logins(bastion), logins(machine)) == (1, 1)
    # Closing the transport ended both connections.
    wait_until(lambda: not bastion.connection_pids() and not machine.connection_pids(), "both connections end")


def test_wrong_bastion_key_is_refused_naming_the_bastion_and_the_machine_is_never_contacted(
    sshd: Factory, tmp_path: Path, make_host_key: Callable[..., Path]
) -> None:
    bastion, machine = sshd(), sshd()
    impostor = public_line(make_host_key())  # the key pinned for the bastion; the bastion presents its own
    probes = len(connections(machine))
    transport = SSHTransport(
        target_of(machine, proxy_jump=target_of(bastion, host_key=impostor)), known_hosts=tmp_path / "known_hosts"
    )
    with pytest.raises(HostKeyMismatch) as refused:
        transport.run("true")

    message = str(refused.value)
    assert f"host key mismatch for the bastion 127.0.0.1:{bastion.port}" in message
    assert fingerprint(impostor) in message and bastion.host_key_fingerprint in message
    assert "nothing was sent" in message
    wait_until(lambda: "[preauth]" in bastion.log(), "the refused connection ends on the bastion")
    assert logins(bastion) == 0
    assert len(connections(machine)) == probes  # nothing reached the machine
    # Control: correctly pinned, the same route logs in on both.
    with SSHTransport(target_of(machine, proxy_jump=target_of(bastion)), known_hosts=tmp_path / "known_hosts") as ok:
        assert ok.run("true").exit_code == 0
    assert (logins(bastion), logins(machine)) == (1, 1)


def test_wrong_machine_key_behind_a_good_bastion_is_refused_naming_the_machine(
    sshd: Factory, tmp_path: Path, make_host_key: Callable[..., Path]
) -> None:
    bastion, machine = sshd(), sshd()
    impostor = public_line(make_host_key())
    transport = SSHTransport(
        target_of(machine, host_key=impostor, proxy_jump=target_of(bastion)), known_hosts=tmp_path / "known_hosts"
    )
    with pytest.raises(HostKeyMismatch) as refused:
        transport.connect()

    message = str(refused.value)
    assert f"host key mismatch for the machine 127.0.0.1:{machine.port}" in message
    assert fingerprint(impostor) in message and machine.host_key_fingerprint in message
    assert "bastion" not in message
    assert transport.host_key_fingerprint == machine.host_key_fingerprint
    wait_until(lambda: "[preauth]" in machine.log(), "the refused connection ends on the machine")
    assert logins(machine) == 0
    assert logins(bastion) == 1  # the bastion was trusted and logged in to; the refused hop was the machine
    wait_until(lambda: not bastion.connection_pids(), "the bastion's connection is closed after the refusal")


def test_a_bastion_that_refuses_the_key_is_an_auth_error_naming_the_bastion(sshd: Factory, tmp_path: Path) -> None:
    other_key = tmp_path / "other_key"
    write_key_pair(other_key)
    bastion, machine = sshd(authorized_key=other_key), sshd()
    probes = len(connections(machine))
    transport = SSHTransport(
        target_of(machine, proxy_jump=target_of(bastion)), known_hosts=tmp_path / "known_hosts", connect_timeout_s=30
    )
    started = time.monotonic()
    with pytest.raises(SSHAuthError, match=re.escape(f"the bastion {bastion.user}@127.0.0.1:{bastion.port}")):
        transport.connect()
    assert time.monotonic() - started < 5  # not retried
    assert len(connections(machine)) == probes


def test_trust_on_first_use_records_both_hops(sshd: Factory, tmp_path: Path) -> None:
    bastion, machine = sshd(), sshd()
    known_hosts = tmp_path / "known_hosts"
    trusted = {"host_key": None, "trust_on_first_use": True}
    with SSHTransport(target_of(machine, **trusted, proxy_jump=target_of(bastion, **trusted)),
                      known_hosts=known_hosts) as transport:
        assert transport.run("echo first").stdout == b"first\n"
    assert known_hosts.read_text() == (
        f"[127.0.0.1]:{bastion.port} {bastion.host_key}\n[127.0.0.1]:{machine.port} {machine.host_key}\n"
    )
    # Recorded now, the keys count as pinned: trust on first use is not needed again.
    with SSHTransport(target_of(machine, host_key=None, proxy_jump=target_of(bastion, host_key=None)),
                      known_hosts=known_hosts) as transport:
        assert transport.run("true").exit_code == 0


# Inventory --------------------------------------------------------------------------------------------------------


def inventory_host(server: SSHServer, name: str = "behind-bastion", **fields: Any) -> dict[str, Any]:
    entry = {"name": name, "host": server.host, "port": server.port, "user": server.user,
             "key_path": str(server.client_key_path), "host_key": server.host_key}
    return {**entry, **fields}


def test_inventory_proxy_jump_becomes_the_bastion_of_the_access_and_is_used(sshd: Factory, tmp_path: Path) -> None:
    bastion, machine = sshd(), sshd()
    jump = {"host": bastion.host, "port": bastion.port, "user": bastion.user,
            "key_path": str(bastion.client_key_path), "host_key": bastion.host_key_fingerprint}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": [inventory_host(machine, proxy_jump=jump)]}))

    access = load_inventory(path).hosts[0].access()

    assert access.bastion == Access(
        via="ssh", host=bastion.host, port=bastion.port, user=bastion.user, key_path=str(bastion.client_key_path),
        host_key=bastion.host_key_fingerprint,
    )
    assert access.describe() == f"{machine.user}@127.0.0.1:{machine.port} via {bastion.user}@127.0.0.1:{bastion.port}"
    transport = transport_to(access, tmp_path, connect_timeout_s=10)
    try:
        assert transport.run("echo via inventory").stdout == b"via inventory\n"
    finally:
        transport.close()
    assert (logins(bastion), logins(machine)) == (1, 1)
    assert not known_hosts_path(tmp_path).exists()  # both keys were pinned: nothing trusted on first use


def test_inventory_proxy_jump_port_defaults_to_22(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": [{
        "name": "box", "host": "10.0.0.12", "user": "ubuntu", "key_path": "/keys/box", "host_key": "SHA256:" + "A" * 43,
        "proxy_jump": {"host": "bastion.example.org", "user": "jump", "key_path": "/keys/jump",
                       "trust_on_first_use": True},
    }]}))
    bastion = load_inventory(path).hosts[0].access().bastion
    assert bastion is not None and (bastion.port, bastion.host_key, bastion.trust_on_first_use) == (22, None, True)


def test_inventory_proxy_jump_without_host_key_or_trust_is_one_spec_error_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": [{
        "name": "box", "host": "10.0.0.12", "user": "ubuntu", "key_path": "/keys/box", "host_key": "SHA256:" + "A" * 43,
        "proxy_jump": {"host": "bastion.example.org", "user": "jump", "key_path": "/keys/jump"},
    }]}))
    with pytest.raises(SpecError) as refused:
        load_inventory(path)
    message = str(refused.value)
    assert refused.value.field == "inventory hosts.0.proxy_jump"
    assert "host_key" in message and "trust_on_first_use" in message
    assert "\n" not in message


# Dropped connections and booting machines -------------------------------------------------------------------------


def test_cut_bastion_connection_is_re_established_for_the_next_command(sshd: Factory, tmp_path: Path) -> None:
    bastion, machine = sshd(), sshd()
    with SSHTransport(target_of(machine, proxy_jump=target_of(bastion)), known_hosts=tmp_path / "known_hosts") as t:
        assert t.run("echo before").stdout == b"before\n"
        first = bastion.connection_pids()
        assert len(first) == 1
        assert bastion.cut_connections()
        assert t.run("echo after").stdout == b"after\n"
        assert bastion.connection_pids() and bastion.connection_pids() != first
    assert (logins(bastion), logins(machine)) == (2, 2)


def test_command_cut_mid_run_at_the_bastion_is_run_again_on_a_new_route(sshd: Factory, tmp_path: Path) -> None:
    bastion, machine = sshd(), sshd()
    counter = tmp_path / "runs"
    results: list[Any] = []
    with SSHTransport(target_of(machine, proxy_jump=target_of(bastion)), known_hosts=tmp_path / "known_hosts") as t:
        command = f"echo x >> {shlex.quote(str(counter))}; sleep 1; echo done"
        worker = threading.Thread(target=lambda: results.append(t.run(command, timeout=30)))
        worker.start()
        wait_until(counter.exists, "the command starts")
        bastion.cut_connections()
        worker.join(timeout=30)
    assert results and results[0].exit_code == 0 and results[0].stdout == b"done\n"
    assert counter.read_text() == "x\nx\n"
    assert (logins(bastion), logins(machine)) == (2, 2)


def test_connect_waits_through_the_bastion_for_a_machine_that_boots_late(
    sshd: Factory, tmp_path: Path, make_host_key: Callable[..., Path]
) -> None:
    bastion = sshd()
    port = free_port()
    host_key_path = make_host_key()
    failures: list[BaseException] = []

    def boot() -> None:
        try:
            sshd(port=port, host_key_path=host_key_path)
        except BaseException as error:  # reported below
            failures.append(error)

    target = SSHTarget(bastion.host, port, bastion.user, bastion.client_key_path, host_key=public_line(host_key_path),
                       proxy_jump=target_of(bastion))
    transport = SSHTransport(target, known_hosts=tmp_path / "known_hosts", connect_timeout_s=15)
    late = threading.Timer(1.0, boot)
    started = time.monotonic()
    late.start()
    try:
        transport.connect()
        assert transport.run("echo booted").stdout == b"booted\n"
    finally:
        late.join()
        transport.close()
    assert not failures
    assert 1.0 <= time.monotonic() - started < 10
    assert logins(bastion) >= 2  # each attempt went through the bastion; the refused forwards were retried
