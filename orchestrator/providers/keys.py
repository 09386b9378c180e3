"""A run's SSH keys, made here for every cloud provider: the client key it logs in with and the host key its machines
present.

The client key is ed25519, its private half 0600 in a 0700 directory ``$ORCHESTRATE_HOME/keys/<run-id>/`` (removed
at teardown), its public half given to the cloud. The host key is ed25519 too, made in memory: its private half goes
to the machine through cloud-init's ``ssh_keys`` (never to disk, never to a log) and its public half is the
machine's pinned host key, so the first connection already knows whom to expect.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import SpecError

KEY_FILE = "id_ed25519"  # the run's private client key, in keys/<run-id>/


def key_dir(home: Path, run_id: str) -> Path:
    """Where the run's private client key lives."""
    return home / "keys" / run_id


@dataclass(frozen=True)
class ClientKey:
    """The run's SSH login key: a private key file and its public line."""

    path: Path
    public: str  # "ssh-ed25519 AAAA…"


@dataclass(frozen=True)
class HostKey:
    """The run's SSH host key. ``private`` goes into user-data only; ``public`` is pinned on every machine."""

    public: str  # "ssh-ed25519 AAAA…"
    private: str = field(repr=False)  # OpenSSH PEM; never written to disk or logged


def client_key(home: Path, run_id: str) -> ClientKey:
    """Returns the run's client key, making it (0600, in a 0700 directory) if it does not exist yet."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    directory = key_dir(home, run_id)
    path = directory / KEY_FILE
    if path.exists():
        loaded = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        line = loaded.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        return ClientKey(path, line.decode())
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    partial = path.with_name(KEY_FILE + ".partial")
    partial.touch(mode=0o600)  # 0600 before a byte of the key is in it
    partial.chmod(0o600)
    partial.write_bytes(pem)
    partial.replace(path)
    path.with_name(KEY_FILE + ".pub").write_text(public + "\n")
    return ClientKey(path, public)


def remove_client_key(home: Path, run_id: str) -> None:
    """Removes the run's key directory (idempotent)."""
    shutil.rmtree(key_dir(home, run_id), ignore_errors=True)


def host_key() -> HostKey:
    """Makes a fresh ed25519 host key in memory."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return HostKey(public=public.decode(), private=pem)


def checked_cidr(cidr: str | None) -> str:
    """Returns the CIDR port 22 may be reached from, normalised.

    Raises:
        SpecError: none was given, it is not a network, or it opens port 22 to the whole Internet.
    """
    accepted = "the address (or small network) you connect from, e.g. 203.0.113.7/32"
    if not cidr:
        raise SpecError("allowed_cidr", cidr, accepted, hint="a cloud machine's SSH port is never opened to everyone")
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise SpecError("allowed_cidr", cidr, accepted) from None
    if network.prefixlen == 0:
        raise SpecError("allowed_cidr", cidr, accepted, hint="a cloud machine's SSH port is never opened to everyone")
    return str(network)


@dataclass(frozen=True)
class SSHEndpoint:
    """Where every machine's SSH is reached instead of its public address: a testing setting of the cloud providers
    (``ORCHESTRATE_AWS_SSH_ENDPOINT``, ``ORCHESTRATE_AZURE_SSH_ENDPOINT``) that sends it to a loopback sshd."""

    host: str
    port: int
    user: str | None = None  # the login user there; None keeps the image's

    @classmethod
    def parse(cls, text: str, *, field: str = "ssh_endpoint") -> SSHEndpoint:
        """Reads ``[user@]host:port``; ``field`` is the setting it came from, for the error line.

        Raises:
            SpecError: it is not of that form.
        """
        user, _, address = text.strip().rpartition("@")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SpecError(field, text, "[user@]host:port, e.g. 127.0.0.1:2222")
        return cls(host=host, port=int(port), user=user or None)

    @classmethod
    def setting(cls, given: str | None, env: str) -> SSHEndpoint | None:
        """The endpoint a cloud provider was given, else the one its environment variable ``env`` names, else None.

        Raises:
            SpecError: it is not of the form ``[user@]host:port`` (the line names ``env``).
        """
        text = given if given is not None else os.environ.get(env)
        return cls.parse(text, field=env) if text else None

    def reach(self, default_user: str) -> tuple[str, int, str]:
        """(host, port, user) every machine is reached at: this endpoint's, with the image's login user unless it
        names one."""
        return self.host, self.port, self.user or default_user
