"""Host-key pinning and one SSH hop's login: what a target is, the key it must present, the bastion's forward.

Split from :mod:`orchestrator.remote.ssh` (the transport: connecting with backoff, commands, uploads,
reconnecting), which builds each connection from these hops. See that module for the guarantees.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from orchestrator.errors import HostKeyMismatch, RemoteError, SpecError, SSHAuthError

logger = logging.getLogger("orchestrator.remote.ssh")

_CHANNEL_OPEN_MAX_S = 30.0
_KEY_TYPES = frozenset(
    {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}
)
_ACCEPTED_PIN = 'an OpenSSH public key line such as "ssh-ed25519 AAAA…" or a fingerprint such as "SHA256:…"'


def fingerprint(key_line_or_pkey: str | paramiko.PKey) -> str:
    """Returns the OpenSSH SHA256 fingerprint (``ssh-keygen -l`` style, ``SHA256:`` and unpadded base64).

    Args:
        key_line_or_pkey: a public key line ``"ssh-ed25519 AAAA… [comment]"``, a paramiko key, or a fingerprint
            (returned normalised).
    """
    if not isinstance(key_line_or_pkey, str):
        return str(key_line_or_pkey.fingerprint)  # paramiko >= 3.2: "SHA256:" and unpadded base64, as OpenSSH
    text = key_line_or_pkey.strip()
    if text.startswith("SHA256:"):
        return text.rstrip("=")
    blob = _parse_key_line(text)[1]
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class SSHTarget:
    """One machine to reach over SSH, as the provider or the inventory describes it."""

    host: str
    port: int
    user: str
    key_path: Path  # the private key (ed25519, ECDSA or RSA, unencrypted) that authenticates to this host
    host_key: str | None = None  # pinned "ssh-ed25519 AAAA…" line, or an OpenSSH fingerprint "SHA256:…"
    trust_on_first_use: bool = False  # accept and record an unknown key once; only where the inventory says so
    # Reach this host through that bastion (ProxyJump): host and port are then as the bastion resolves them.
    proxy_jump: SSHTarget | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SpecError("port", self.port, "an integer from 1 to 65535")
        if self.host_key is not None and not self.host_key.strip().startswith("SHA256:"):
            _parse_key_line(self.host_key)

    @property
    def address(self) -> str:
        """``user@host:port`` (and `` via `` the bastion's), for messages."""
        text = f"{self.user}@{self.host}:{self.port}"
        return f"{text} via {self.proxy_jump.address}" if self.proxy_jump is not None else text

    def hops(self) -> tuple[SSHTarget, ...]:
        """The hosts to connect in order: the outermost bastion first, this target last."""
        return (*self.proxy_jump.hops(), self) if self.proxy_jump is not None else (self,)

    @property
    def known_hosts_name(self) -> str:
        """The host as OpenSSH writes it in ``known_hosts``: ``[host]:port`` unless the port is 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class _Pin:
    """The host key a connection must see, and where that expectation came from."""

    fingerprint: str  # of the first key, for messages
    keys: tuple[Any, ...]  # paramiko public keys (one per key type); empty when only a fingerprint is pinned
    source: str  # "the inventory" or the known_hosts path


class _Hop:
    """One SSH server on the way to the machine, or the machine: its expected host key and its private key.

    Args:
        target: the host to log in to.
        known_hosts: as for :class:`SSHTransport`.
        bastions_after: 0 for the machine itself, 1 for its bastion, 2 for that bastion's bastion.
    """

    def __init__(self, target: SSHTarget, known_hosts: Path, *, bastions_after: int) -> None:
        self.target = target
        self.known_hosts = known_hosts
        self.role = "the bastion" if bastions_after else "the machine"  # names the refusing hop in messages
        self.pin_field = "proxy_jump." * bastions_after + "host_key"  # where the inventory pins this hop's key
        self.presented_fingerprint: str | None = None  # of the key this hop presented last, also a refused one
        self._private_key: Any = None

    @property
    def login(self) -> str:
        """``user@host:port`` of this hop alone, for messages."""
        return f"{self.target.user}@{self.target.host}:{self.target.port}"

    def connect(self, channel: Any, attempt_timeout: float) -> Any:
        """Logs in to this hop over a new TCP connection, or over ``channel`` (a previous hop's forward).

        Returns:
            The connected paramiko ``SSHClient``.

        Raises:
            HostKeyMismatch, SSHAuthError, RemoteError: retrying cannot help. Transient failures propagate as
                OSError, EOFError or paramiko.SSHException.
        """
        target = self.target
        pin = self.expected_pin()
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_PresentedKeyCheck(self, pin))
        # paramiko compares the keys it holds for this host itself (asking the server for the first one's type),
        # and raises BadHostKeyException on a mismatch.
        for known in pin.keys if pin is not None else ():
            client.get_host_keys().add(target.known_hosts_name, known.get_name(), known)
        try:
            client.connect(
                hostname=target.host, port=target.port, username=target.user, pkey=self.private_key(),
                sock=channel, timeout=attempt_timeout, banner_timeout=attempt_timeout, auth_timeout=attempt_timeout,
                allow_agent=False, look_for_keys=False,
            )
        except BaseException as error:
            client.close()
            if channel is not None:
                channel.close()
            self._translate_fatal(error, pin)
            raise
        self.presented_fingerprint = fingerprint(client.get_transport().get_remote_server_key())
        return client

    def _translate_fatal(self, error: BaseException, pin: _Pin | None) -> None:
        """Raises the Orchestrate error for a connection failure that retrying cannot fix; returns otherwise."""
        target = self.target
        if isinstance(error, paramiko.BadHostKeyException):
            self.presented_fingerprint = fingerprint(error.key)
            source = pin.source if pin is not None else str(self.known_hosts)
            raise self.mismatch(fingerprint(error.expected_key), error.key, source) from None
        if isinstance(error, paramiko.AuthenticationException):
            raise SSHAuthError(
                f"{self.role} {self.login} refused the SSH key {target.key_path}: {_describe(error)}",
                hint=f"add the matching public key to ~{target.user}/.ssh/authorized_keys on {self.role}",
            ) from error
        if isinstance(error, socket.gaierror):
            raise RemoteError(f"cannot resolve the host name {target.host!r}: {error}") from error
        if isinstance(error, paramiko.ssh_exception.IncompatiblePeer):
            raise RemoteError(f"{self.role} {self.login} shares no SSH algorithms with paramiko: {error}") from error

    def expected_pin(self) -> _Pin | None:
        """Returns the key to expect: the inventory's pin, else a ``known_hosts`` entry, else None under TOFU.

        Raises:
            HostKeyMismatch: nothing is pinned and trust-on-first-use is off (raised before any connection).
        """
        target = self.target
        if target.host_key is not None:
            text = target.host_key.strip()
            if text.startswith("SHA256:"):
                return _Pin(fingerprint(text), (), "the inventory")
            key_type, blob = _parse_key_line(text)
            key = paramiko.PKey.from_type_string(key_type, blob)
            return _Pin(fingerprint(key), (key,), "the inventory")
        known = self._known_keys()
        if known:
            return _Pin(fingerprint(known[0]), known, str(self.known_hosts))
        if target.trust_on_first_use:
            return None
        raise HostKeyMismatch(
            f"no pinned host key for {target.host}:{target.port} ({self.role}); add {self.pin_field} to the "
            f"inventory or set trust_on_first_use (nothing was sent; {self.known_hosts} has no entry for "
            f"{target.known_hosts_name})",
            hint=f'get it on {self.role} with "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" and pin it as '
            f'{self.pin_field}: "SHA256:…"',
        )

    def _known_keys(self) -> tuple[Any, ...]:
        """Returns the keys ``known_hosts`` holds for this host, ed25519 first."""
        if not self.known_hosts.exists():
            return ()
        keys = paramiko.HostKeys()
        try:
            keys.load(str(self.known_hosts))
        except (OSError, UnicodeDecodeError) as error:
            raise RemoteError(f"cannot read {self.known_hosts}: {error}") from error
        entries = keys.lookup(self.target.known_hosts_name) or {}
        return tuple(entries[key_type] for key_type in sorted(entries.keys(), key=lambda t: t != "ssh-ed25519"))

    def record_first_use(self, key: Any) -> None:
        """Appends the presented key to ``known_hosts`` (file 0600, a new parent directory 0700)."""
        line = f"{self.target.known_hosts_name} {key.get_name()} {key.get_base64()}\n"
        try:
            self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(self.known_hosts, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(descriptor, "a") as file:
                file.write(line)
        except OSError as error:  # not a connection failure: must not be retried as one
            raise RemoteError(f"cannot record the host key of {self.role} {self.login} in {self.known_hosts}: "
                              f"{error}") from error
        logger.info("%s %s: trusted on first use, host key %s recorded in %s", self.role, self.login,
                    fingerprint(key), self.known_hosts)

    def mismatch(self, expected: str, presented: Any, source: str) -> HostKeyMismatch:
        """The refusal of a presented key other than the expected one, naming this hop and both fingerprints."""
        target = self.target
        if source == "the inventory":
            hint = f"if {self.role} was rebuilt, put its new key in the inventory's {self.pin_field}"
        else:
            hint = f"if {self.role} was rebuilt, remove the line for {target.known_hosts_name} from {source}"
        behind = "" if self.role == "the machine" else "; the machine behind it was not contacted"
        return HostKeyMismatch(
            f"host key mismatch for {self.role} {target.host}:{target.port}: expected {expected} (pinned in "
            f"{source}), {self.role} presented {fingerprint(presented)} ({presented.get_name()}); "
            f"nothing was sent (the connection ended before authentication{behind})",
            hint=hint + "; otherwise someone may be intercepting the connection",
        )

    def private_key(self) -> Any:
        """Loads this hop's private key once.

        Raises:
            SSHAuthError: the file is missing, unreadable, encrypted or not a key.
        """
        if self._private_key is None:
            try:
                self._private_key = paramiko.PKey.from_path(self.target.key_path)
            except (OSError, ValueError, TypeError, paramiko.SSHException) as error:
                raise SSHAuthError(
                    f"cannot load the SSH private key {self.target.key_path} for {self.role} {self.login}: "
                    f"{_describe(error)}",
                    hint="key_path must be an unencrypted ed25519, ECDSA or RSA private key readable by you",
                ) from error
        return self._private_key


class _PresentedKeyCheck:
    """paramiko's missing-host-key policy when it holds no full key: a pinned fingerprint, or first use.

    paramiko calls it after key exchange and before authentication; raising aborts the connection.
    """

    def __init__(self, hop: _Hop, pin: _Pin | None) -> None:
        self.hop = hop
        self.pin = pin

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        """Accepts ``key`` if it matches the pinned fingerprint, or records it under trust-on-first-use."""
        presented = fingerprint(key)
        self.hop.presented_fingerprint = presented
        if self.pin is None:
            self.hop.record_first_use(key)
            return
        if presented != self.pin.fingerprint:  # only a fingerprint is pinned: paramiko held no key to compare
            raise self.hop.mismatch(self.pin.fingerprint, key, self.pin.source)


def _open_forward(bastion: Any, target: SSHTarget, timeout: float) -> Any:
    """Asks a logged-in bastion to open a TCP connection to ``target`` (a ``direct-tcpip`` channel), as ``ssh -J``.

    A refusal by the bastion (the machine not up yet, the port closed) is transient: it becomes an SSHException.
    """
    try:
        return bastion.get_transport().open_channel(
            "direct-tcpip", (target.host, target.port), ("127.0.0.1", 0), timeout=timeout
        )
    except paramiko.ChannelException as error:
        raise paramiko.SSHException(
            f"the bastion could not connect to {target.host}:{target.port}: {error.text}"
        ) from error


def _parse_key_line(text: str) -> tuple[str, bytes]:
    """Splits ``"ssh-ed25519 AAAA… [comment]"`` into the key type and the key blob, checking they agree."""
    fields = text.split()
    if len(fields) < 2 or fields[0] not in _KEY_TYPES:
        raise SpecError("host_key", text[:80], _ACCEPTED_PIN)
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except ValueError:
        raise SpecError("host_key", text[:80], _ACCEPTED_PIN, hint="the base64 part is damaged") from None
    length = int.from_bytes(blob[:4], "big")
    if blob[4 : 4 + length] != fields[0].encode():
        raise SpecError("host_key", text[:80], _ACCEPTED_PIN, hint="the key type does not match the key data")
    return fields[0], blob


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
