"""The SSH transport: the :class:`~orchestrator.remote.transport.Transport` contract over one pinned connection.

Imported only when an SSH provider runs, so ``orchestrate --help`` never loads paramiko.

What it guarantees:
    * The host key is checked during key exchange, before authentication (paramiko's ``SSHClient.connect``
      verifies the presented key right after ``start_client`` and only then calls ``_auth``), against the key or
      fingerprint the inventory pins, or an entry already in ``known_hosts``. A mismatch raises
      :class:`~orchestrator.errors.HostKeyMismatch` with both fingerprints; no key, no command, nothing was sent.
    * Trust on first use only where the target says so; the key is then pinned in ``known_hosts``.
    * Only the given private key authenticates: no agent, no ``~/.ssh`` keys, no agent or environment forwarding.
    * A target with a ``proxy_jump`` is reached through that bastion (OpenSSH's ProxyJump): the bastion is
      connected under the same rules, then the machine's own SSH connection runs inside a ``direct-tcpip`` channel
      the bastion opens to it, and the machine's key is checked end to end. Nothing goes past a refused hop.
    * Connecting retries with capped exponential backoff while the machine boots; a connection that drops under
      a command (or between two) is re-established for up to ``command_retry_s`` and the command run again
      (callers pass only idempotent commands).
    * :meth:`SSHTransport.close` is final until :meth:`SSHTransport.connect` is called again: no operation, in any
      thread, reconnects after it (a machine given up for gone is not dialled for minutes by the next poll).
    * paramiko and socket exceptions become :mod:`orchestrator.errors` here, once.
"""

from __future__ import annotations

import io
import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import paramiko

from orchestrator.errors import ConnectTimeout, RemoteError
from orchestrator.remote.ssh_hop import _CHANNEL_OPEN_MAX_S, SSHTarget, _describe, _Hop, _open_forward, fingerprint
from orchestrator.remote.transport import CommandResult

if TYPE_CHECKING:
    from orchestrator.remote.transport import Transport

logger = logging.getLogger(__name__)

__all__ = ["SSHTarget", "SSHTransport", "fingerprint"]

_T = TypeVar("_T")

# Backoff between connection attempts while a machine boots: 0.5 s, 1 s, 2 s, … capped at 10 s.
_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 10.0
# One attempt (TCP connect, banner, key exchange, auth) gets at least this long, so that an attempt started just
# before the deadline can still succeed, and at most this long, so that a black-holed attempt is abandoned.
_MIN_ATTEMPT_S = 2.0
_MAX_ATTEMPT_S = 30.0
# The transport thread closes its channels a moment before it marks itself inactive: wait this long to tell a
# dead connection from a command that merely ended without an exit status (killed by a signal).
_SETTLE_S = 0.5
# An SFTP upload that receives nothing for this long is on a dead connection.
_SFTP_STALL_S = 120.0
_READ_CHUNK = 1 << 16


class _ConnectionLost(Exception):
    """The SSH connection died under an operation; the operation may be retried on a new one."""


@dataclass(frozen=True)
class _Connection:
    """A client logged in to the machine, and the bastions' clients its traffic runs through."""

    client: Any  # paramiko SSHClient logged in to the machine
    jumps: tuple[Any, ...] = ()  # the bastions' SSHClients, outermost first

    def is_active(self) -> bool:
        """Whether every hop is still connected (a dead bastion takes the machine's connection with it)."""
        return all(_is_active(client) for client in (*self.jumps, self.client))

    def close(self) -> None:
        """Closes the machine's connection, then the bastions' from the innermost out."""
        for client in (self.client, *reversed(self.jumps)):
            client.close()


class SSHTransport:
    """Runs commands on one machine over SSH and uploads files to it (the ``Transport`` contract).

    Connects lazily on first use; :meth:`connect` connects eagerly. Safe to share between threads. When the target
    has a ``proxy_jump``, every connection (the first, and each one after a drop) goes through that bastion.

    Args:
        target: the machine and how to authenticate to it (and to its bastion, if any).
        known_hosts: OpenSSH ``known_hosts`` file with previously trusted keys; trust-on-first-use writes to it.
        connect_timeout_s: how long a first connection keeps retrying while the machine boots.
        command_retry_s: how long a command or upload keeps reconnecting after its connection dropped.
        clock: monotonic seconds for the backoff deadlines (injected in tests).
        sleep: how to wait between connection attempts (injected in tests); by default a wait that :meth:`close`
            cuts short.
    """

    def __init__(
        self,
        target: SSHTarget,
        *,
        known_hosts: Path,
        connect_timeout_s: float = 300.0,
        command_retry_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.target = target
        self.known_hosts = known_hosts
        self.connect_timeout_s = connect_timeout_s
        self.command_retry_s = command_retry_s
        self._clock = clock
        # Set by close(), cleared only by connect(): checked before every connection attempt and every operation.
        self._closed = threading.Event()
        self._sleep = sleep if sleep is not None else self._closed.wait
        self._lock = threading.RLock()
        hops = target.hops()
        self._hops = tuple(
            _Hop(hop, known_hosts, bastions_after=len(hops) - 1 - index) for index, hop in enumerate(hops)
        )
        self._connection: _Connection | None = None
        self._connected_once = False  # after a first connection, reconnecting is bounded by command_retry_s

    @property
    def host_key_fingerprint(self) -> str | None:
        """The fingerprint of the host key the machine presented last (also after a refused one), else None."""
        return self._hops[-1].presented_fingerprint

    def __enter__(self) -> SSHTransport:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connects now unless already connected, retrying with backoff for up to ``connect_timeout_s``; undoes a
        :meth:`close` (the only call that does).

        Raises:
            HostKeyMismatch: the machine or its bastion presented a host key other than the pinned one, or has no
                key pinned (nothing was sent to it, nor past it).
            SSHAuthError: a key could not be loaded or the machine or the bastion refused it.
            ConnectTimeout: no SSH connection within ``connect_timeout_s``.
            RemoteError: the host name does not resolve, or the server speaks no common SSH algorithms.
        """
        self._closed.clear()
        self._live_connection(None, first=True)

    def run(self, command: str, *, timeout: float = 60.0) -> CommandResult:
        """Runs a shell command string (no pty, stdin closed) and returns its exit code and output.

        If the connection drops before the exit status arrives, it reconnects (for up to ``command_retry_s``)
        and runs the command again: pass only idempotent commands. A command killed by a signal has exit code -1
        (SSH reports a signal, not a status). After :meth:`close` it raises at once, connecting nowhere.

        Args:
            command: the shell command line; quote every argument with ``shlex.quote``.
            timeout: seconds one attempt may take; past it the channel is closed and the connection discarded
                (a silent connection may be dead without TCP knowing).

        Raises:
            RemoteError: the command timed out or the channel failed, or the transport is closed; ConnectTimeout
                when the connection did not come back; HostKeyMismatch or SSHAuthError when reconnecting met a
                different machine or key.
        """
        return self._with_reconnect(lambda client: self._exec(client, command, timeout))

    def read_to_file(self, command: str, path: Path, *, timeout: float = 600.0) -> CommandResult:
        """Runs a command like :meth:`run` but streams its stdout into ``path`` chunk by chunk as it arrives, so
        output of any size never sits in memory; after a dropped connection the command runs again and the file
        starts over.

        Args:
            command: the shell command line; quote every argument with ``shlex.quote``.
            path: the file on this computer that receives stdout (created or truncated).
            timeout: seconds one attempt may take.

        Returns:
            The exit code and stderr; ``stdout`` is empty (it is in ``path``).

        Raises:
            RemoteError: as :meth:`run`; OSError when ``path`` cannot be written.
        """
        def attempt(client: Any) -> CommandResult:
            with path.open("wb") as sink:
                return self._exec(client, command, timeout, sink)

        return self._with_reconnect(attempt)

    def put_bytes(
        self, data: bytes, remote_path: str, *, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Uploads ``data`` over SFTP to ``remote_path.part``, then renames it over ``remote_path`` (atomic).

        A relative ``remote_path`` is relative to the login directory; ``~`` is not expanded. After a dropped
        connection the upload starts again from the beginning.

        Args:
            data: the file's whole content.
            remote_path: where it goes on the machine; the parent directory must exist.
            progress: called with ``(bytes_sent, total)`` as the upload advances, and with ``(total, total)`` at
                the end.

        Raises:
            RemoteError: the upload or the rename failed (permissions, missing directory, disk full).
        """
        self._with_reconnect(lambda client: self._upload(client, lambda: io.BytesIO(data), len(data), remote_path,
                                                         progress))

    def put_file(
        self, local_path: Path, remote_path: str, *, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Uploads a file of this computer like :meth:`put_bytes` (``.part``, then an atomic rename), read in
        chunks as it is sent rather than whole into memory.

        Raises:
            RemoteError: as :meth:`put_bytes`; OSError when ``local_path`` cannot be read.
        """
        size = local_path.stat().st_size
        self._with_reconnect(lambda client: self._upload(client, lambda: local_path.open("rb"), size, remote_path,
                                                         progress))

    def close(self) -> None:
        """Closes the connection (and the bastion's) for good, until :meth:`connect` is called again.

        Every later operation raises RemoteError at once without connecting, whichever thread calls it, and an
        operation reconnecting in another thread stops at once (or after the attempt under way) instead of retrying
        for ``command_retry_s``: a machine given up for gone is not dialled again.
        """
        self._closed.set()  # first, outside the lock: a thread reconnecting holds it, and sees this between attempts
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    # Connecting ------------------------------------------------------------------------------------------------

    def _live_connection(self, deadline: float | None, *, first: bool = False) -> _Connection:
        """Returns the live connection, connecting first: until ``deadline``; else for ``connect_timeout_s`` when
        ``first`` or before any connection existed, and for ``command_retry_s`` once one has (it dropped between two
        operations: the machine is not booting any more).

        Raises:
            RemoteError: the transport is closed (also when it is closed while connecting).
        """
        with self._lock:
            self._refuse_if_closed()
            if self._connection is not None and self._connection.is_active():
                return self._connection
            self._discard(self._connection)
            if deadline is None and (first or not self._connected_once):
                deadline, why = self._clock() + self.connect_timeout_s, f"within {self.connect_timeout_s:g} s"
            else:
                deadline = deadline if deadline is not None else self._clock() + self.command_retry_s
                why = f"again within {self.command_retry_s:g} s after the connection dropped"
            connection = self._connect_until(deadline, why)
            if self._closed.is_set():  # closed during the last attempt: its connection is not used
                connection.close()
                self._refuse_if_closed()
            self._connection, self._connected_once = connection, True
            return connection

    def _refuse_if_closed(self) -> None:
        if self._closed.is_set():
            raise RemoteError(f"the SSH connection to {self.target.address} was closed: not connecting again")

    def _connect_until(self, deadline: float, why: str) -> _Connection:
        """Connects, retrying transient failures with capped exponential backoff until ``deadline``; stops with
        RemoteError before any attempt once :meth:`close` has been called."""
        for hop in self._hops:  # refuse before opening a socket when a hop has nothing pinned or no usable key
            hop.expected_pin()
            hop.private_key()
        delay = _FIRST_DELAY_S
        attempts = 0
        while True:
            self._refuse_if_closed()
            attempts += 1
            remaining = deadline - self._clock()
            try:
                return self._connect_once(min(_MAX_ATTEMPT_S, max(_MIN_ATTEMPT_S, remaining)))
            except (OSError, EOFError, paramiko.SSHException) as error:
                last_error = error
            remaining = deadline - self._clock()
            if remaining <= 0:
                bastion = self.target.proxy_jump
                reachable = (
                    f"the bastion {bastion.host} can reach port {self.target.port}" if bastion is not None
                    else f"port {self.target.port} is open to this computer"
                )
                raise ConnectTimeout(
                    f"{self.target.address} did not accept an SSH connection {why} ({attempts} attempts); "
                    f"last error: {_describe(last_error)}",
                    hint=f"check that the machine is running, that sshd is up and that {reachable}",
                )
            logger.debug("%s: attempt %d failed (%s); retrying in %.1f s", self.target.address, attempts,
                         _describe(last_error), min(delay, remaining))
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_DELAY_S)

    def _connect_once(self, attempt_timeout: float) -> _Connection:
        """One attempt through every hop; transient failures propagate as OSError, EOFError or SSHException."""
        clients: list[Any] = []
        try:
            for hop in self._hops:
                channel = _open_forward(clients[-1], hop.target, attempt_timeout) if clients else None
                clients.append(hop.connect(channel, attempt_timeout))
        except BaseException:
            for client in reversed(clients):
                client.close()
            raise
        return _Connection(clients[-1], tuple(clients[:-1]))

    def _discard(self, connection: _Connection | None) -> None:
        """Closes ``connection`` and forgets it if it is still the current one."""
        if connection is None:
            return
        with self._lock:
            if self._connection is connection:
                self._connection = None
        connection.close()

    # Operations ------------------------------------------------------------------------------------------------

    def _with_reconnect(self, operation: Callable[[Any], _T]) -> _T:
        """Runs ``operation`` on the machine's live client; on a lost connection reconnects and runs it again."""
        retry_deadline: float | None = None
        while True:
            connection = self._live_connection(retry_deadline)
            try:
                return operation(connection.client)
            except _ConnectionLost as lost:
                self._discard(connection)
                if self._closed.is_set():
                    raise RemoteError(f"the SSH connection to {self.target.address} was closed") from lost
                if retry_deadline is None:
                    retry_deadline = self._clock() + self.command_retry_s
                elif self._clock() >= retry_deadline:
                    raise RemoteError(
                        f"the SSH connection to {self.target.address} kept dropping for "
                        f"{self.command_retry_s:g} s; last: {lost}"
                    ) from lost
                logger.warning("%s: connection lost (%s); reconnecting to run it again", self.target.address, lost)
            except BaseException:
                self._discard(connection)
                raise

    def _exec(self, client: Any, command: str, timeout: float, sink: IO[bytes] | None = None) -> CommandResult:
        transport = client.get_transport()
        # Real time, not the injected clock: this deadline bounds waiting on a socket.
        deadline = time.monotonic() + timeout
        try:
            channel = transport.open_session(timeout=min(timeout, _CHANNEL_OPEN_MAX_S))
            try:
                channel.exec_command(command)
                channel.shutdown_write()
                stdout, stderr, finished = _read_until_exit(channel, deadline, sink)
                exit_code = int(channel.exit_status)
            finally:
                channel.close()
        except (OSError, EOFError, paramiko.SSHException) as error:
            if _is_lost(transport):
                raise _ConnectionLost(_describe(error)) from error
            raise RemoteError(f"running a command on {self.target.address} failed: {_describe(error)}") from error
        if not finished:
            raise RemoteError(f"command timed out after {timeout:g} s on {self.target.address}: {command[:60]}")
        if exit_code == -1 and _is_lost(transport):
            raise _ConnectionLost("the connection closed before the command's exit status arrived")
        return CommandResult(exit_code, stdout, stderr)

    def _upload(
        self, client: Any, source: Callable[[], IO[bytes]], total: int, remote_path: str,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        """Sends ``total`` bytes that ``source()`` opens (again on each attempt) to ``remote_path`` atomically."""
        transport = client.get_transport()
        last_reported = -1

        def report(sent: int, _size: int) -> None:
            nonlocal last_reported
            last_reported = sent
            if progress is not None:
                progress(sent, total)

        part = remote_path + ".part"
        try:
            sftp = client.open_sftp()
            try:
                sftp.get_channel().settimeout(_SFTP_STALL_S)
                with source() as data:
                    sftp.putfo(data, part, file_size=total, callback=report, confirm=True)
                sftp.posix_rename(part, remote_path)
            finally:
                sftp.close()
        except (OSError, EOFError, paramiko.SSHException) as error:
            # The server answered with a status: the connection is alive.
            answered = isinstance(error, (FileNotFoundError, PermissionError))
            if not answered and (isinstance(error, TimeoutError) or _is_lost(transport)):
                raise _ConnectionLost(_describe(error)) from error
            raise RemoteError(
                f"uploading {total} bytes to {self.target.address}:{remote_path} failed: {_describe(error)}"
            ) from error
        if progress is not None and last_reported != total:
            progress(total, total)


def _read_until_exit(channel: Any, deadline: float, sink: IO[bytes] | None = None) -> tuple[bytes, bytes, bool]:
    """Reads stdout and stderr together (neither can fill the window and stall the other) until the command
    has exited and both streams ended, or the deadline passed. Returns ``(stdout, stderr, finished)``; with a
    ``sink``, stdout is written there chunk by chunk instead (and returned empty)."""
    stdout, stderr = bytearray(), bytearray()
    while True:
        # Look for the end before draining: output that arrives after an empty look and before the end is seen
        # would be lost otherwise (the transport thread may deliver the last chunks and the end in between, which a
        # loaded machine makes likely). Paramiko queues every chunk before it marks the end.
        ended = channel.eof_received or channel.closed
        if channel.recv_ready():
            chunk = channel.recv(_READ_CHUNK)
            if sink is not None:
                sink.write(chunk)
            else:
                stdout += chunk
            continue
        if channel.recv_stderr_ready():
            stderr += channel.recv_stderr(_READ_CHUNK)
            continue
        remaining = deadline - time.monotonic()
        # OpenSSH may send the exit status before the last output, so wait for end of file too.
        if ended:
            return bytes(stdout), bytes(stderr), bool(channel.status_event.wait(max(0.0, remaining)))
        if remaining <= 0:
            return bytes(stdout), bytes(stderr), False
        select.select([channel], [], [], min(remaining, 1.0))


def _is_active(client: Any) -> bool:
    transport = client.get_transport()
    return transport is not None and bool(transport.is_active())


def _is_lost(transport: Any) -> bool:
    """Whether the connection under ``transport`` is dead (as opposed to one channel failing)."""
    if transport.is_active():
        transport.join(timeout=_SETTLE_S)
    return not transport.is_active()



if TYPE_CHECKING:

    def _satisfies_transport(ssh: SSHTransport) -> Transport:
        return ssh
