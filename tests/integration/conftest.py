"""Real OpenSSH ``sshd`` servers on 127.0.0.1 with throw-away keys, started and stopped by fixtures.

``sshd`` is a factory: ``sshd()`` starts a server on a free port with a fresh ed25519 host key;
``sshd(port=…, host_key_path=…)`` starts one on a chosen port or with a chosen host key (to play a rebuilt or
impostor machine). Every process is stopped by its own pid at teardown. Without ``/usr/sbin/sshd`` the tests that
need a server are skipped with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

SSHD = Path("/usr/sbin/sshd")
START_TIMEOUT_S = 10.0


def write_key_pair(path: Path, kind: str = "ed25519") -> str:
    """Writes an unencrypted OpenSSH private key (0600) and ``path.pub``; returns the public key line."""
    private = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else rsa.generate_private_key(65537, 2048)
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public.decode()
    path.with_name(path.name + ".pub").write_text(line + "\n")
    return line


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SSHServer:
    """One running ``sshd`` and what a client needs to reach it."""

    host: str
    port: int
    user: str
    client_key_path: Path
    host_key: str  # the "ssh-ed25519 AAAA…" public line of the key the server presents
    host_key_fingerprint: str
    host_key_path: Path
    log_path: Path  # sshd's own log (LogLevel VERBOSE): "Accepted publickey …" for each login
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        """The listening sshd's pid."""
        return self.process.pid

    def connection_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener); killing one cuts that connection."""
        return _children(self.pid)

    def cut_connections(self) -> list[int]:
        """SIGKILLs every per-connection sshd process (and its privilege-separated child); returns their pids."""
        killed = []
        for pid in self.connection_pids():
            for victim in [pid, *_children(pid)]:
                if _comm(victim).startswith("sshd"):
                    _kill(victim, signal.SIGKILL)
                    killed.append(victim)
        return killed

    def log(self) -> str:
        """What sshd has logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stops the listener and every process under it (connections, their shells), each by its own pid."""
        if self.process.poll() is None:
            descendants = _descendants(self.pid)
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            for pid in descendants:
                _kill(pid, signal.SIGKILL)


def _descendants(parent: int) -> list[int]:
    found = []
    for child in _children(parent):
        found += [child, *_descendants(child)]
    return found


def _children(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name sits in parentheses and may contain spaces: the ppid is the second field after it.
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


@pytest.fixture(scope="session")
def sshd_binary() -> Path:
    """The sshd executable and its privilege-separation directory; skips the test when unavailable."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing: install openssh-server (apt-get install -y openssh-server) to run this")
    try:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as error:
        pytest.skip(f"sshd needs /run/sshd and it cannot be created: {error}")
    return SSHD


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away ed25519 client key (0600) for the whole session; its ``.pub`` sits beside it."""
    path = tmp_path_factory.mktemp("client-key") / "id_ed25519"
    write_key_pair(path)
    return path


@pytest.fixture
def make_host_key(tmp_path: Path) -> Callable[..., Path]:
    """Writes a fresh host key pair and returns the private key's path (``kind`` "ed25519" or "rsa")."""
    counter = iter(range(1_000_000))

    def make(kind: str = "ed25519") -> Path:
        path = tmp_path / f"host_key_{next(counter)}_{kind}"
        write_key_pair(path, kind)
        return path

    return make


def start_server(
    directory: Path,
    client_key: Path,
    host_key_path: Path,
    *,
    port: int | None = None,
    authorized_key: Path | None = None,
    sshd_binary: Path = SSHD,
) -> SSHServer:
    """Starts one sshd on 127.0.0.1 with its own config in ``directory`` and waits until it answers.

    Plain function (the ``sshd`` fixture and ``make bench`` both use it); the caller stops the server. A port picked
    here that another process (a parallel test worker) takes before sshd binds it is picked again.
    """
    if port is not None:
        return _start_server(directory, client_key, host_key_path, port, authorized_key, sshd_binary)
    for attempt in range(PORT_TRIES):
        try:
            return _start_server(directory / f"try-{attempt}" if attempt else directory, client_key, host_key_path,
                                 free_port(), authorized_key, sshd_binary)
        except PortTaken:
            continue
    raise RuntimeError(f"sshd found no free port in {PORT_TRIES} tries")


class PortTaken(RuntimeError):
    """sshd could not bind the port it was given."""


PORT_TRIES = 5


def _start_server(
    directory: Path, client_key: Path, host_key_path: Path, port: int, authorized_key: Path | None,
    sshd_binary: Path,
) -> SSHServer:
    directory.mkdir(parents=True)
    (directory / "home").mkdir()
    authorized_keys = directory / "authorized_keys"
    login_key = authorized_key or client_key
    authorized_keys.write_text(login_key.with_name(login_key.name + ".pub").read_text())
    authorized_keys.chmod(0o600)
    config = directory / "sshd_config"
    # An own config file (not /etc/ssh/sshd_config) so the machine's settings cannot change the tests.
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key_path}",
                f"AuthorizedKeysFile {authorized_keys}",
                f"PidFile {directory / 'sshd.pid'}",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PrintMotd no",
                "LogLevel VERBOSE",
                "Subsystem sftp internal-sftp",
                # This image's root ~/.bashrc runs `pyenv init` (a `pyenv rehash`) for every SSH command; a rehash
                # killed with its session (a test stopping a box or cutting its connection) leaves pyenv's lock
                # behind and every later command would wait 60 s on it. The boxes' sessions get a home of their own.
                f"SetEnv HOME={directory / 'home'}",
            ]
        )
        + "\n"
    )
    log_path = directory / "sshd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(sshd_binary), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    host_key = host_key_path.with_name(host_key_path.name + ".pub").read_text().strip()
    server = SSHServer(
        host="127.0.0.1", port=port, user=getpass.getuser(), client_key_path=client_key, host_key=host_key,
        host_key_fingerprint=_fingerprint(host_key), host_key_path=host_key_path, log_path=log_path,
        process=process,
    )
    try:
        _wait_until_listening(server)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def sshd(
    sshd_binary: Path, client_key: Path, tmp_path: Path, make_host_key: Callable[..., Path]
) -> Iterator[Callable[..., SSHServer]]:
    """Factory: ``sshd(port=None, host_key_path=None, authorized_key=None)`` starts a server and waits for it.

    Safe to call from a helper thread (a server that starts late). All servers stop at teardown.
    """
    servers: list[SSHServer] = []
    lock = threading.Lock()

    def start(
        *, port: int | None = None, host_key_path: Path | None = None, authorized_key: Path | None = None
    ) -> SSHServer:
        server = start_server(
            tmp_path / f"sshd-{time.monotonic_ns()}", client_key, host_key_path or make_host_key(), port=port,
            authorized_key=authorized_key, sshd_binary=sshd_binary,
        )
        with lock:
            servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _wait_until_listening(server: SSHServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            log = server.log()
            if "Address already in use" in log:
                raise PortTaken(f"port {server.port} is taken: {log[-500:]}")
            raise RuntimeError(f"sshd exited with {server.process.returncode}: {log[-2000:]}")
        try:
            with socket.create_connection((server.host, server.port), timeout=1.0) as probe:
                # Read the banner, so the server is really serving and not just bound.
                probe.settimeout(2.0)
                if probe.recv(64).startswith(b"SSH-") and server.process.poll() is None:
                    return  # (a banner while ours has exited came from another worker's server on the port)
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"sshd on port {server.port} did not listen in {START_TIMEOUT_S:g} s: {server.log()}")
        time.sleep(0.02)


def _fingerprint(key_line: str) -> str:
    """Computed here independently of orchestrator.remote.ssh, so the two cross-check each other."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@pytest.fixture
def payload(fake_payload: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in payload that measures 50 images/s at once (ORCHESTRATE_PAYLOAD_DIR points at it)."""
    from tests.conftest import FAKE_MAIN_HEADER

    package = fake_payload(FAKE_MAIN_HEADER + 'write([sample("train_throughput", "images_per_sec", 50.0)])\n')
    monkeypatch.setenv("ORCHESTRATE_PAYLOAD_DIR", str(package))
