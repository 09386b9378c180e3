"""Running shell commands on a machine: the :class:`Transport` contract and its local implementation.

A :class:`Transport` runs one shell command string on the machine. The local dev box uses
:class:`LocalTransport` (``/bin/sh`` in a subprocess); SSH machines use :class:`orchestrator.remote.ssh.SSHTransport`
with the very same contract, so everything above (the detached payload, prepare, clean-up) is written once.
Every command is built with ``shlex.quote``.

A command on the local box runs in this process's environment less what logs in elsewhere
(:func:`without_credentials`): a payload on a cloud machine never holds the orchestrator's cloud credentials or its
SSH agent, and the same payload on the dev box does not either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.errors import RemoteError

# What logs in to a cloud or to other machines: the variables the AWS, Azure and Google SDKs and CLIs read
# credentials (and the accounts they name) from, Terraform's Azure provider, managed identities, the SSH agent.
CREDENTIAL_PREFIXES = ("AWS_", "AZURE_", "ARM_", "GOOGLE_", "CLOUDSDK_")
CREDENTIAL_NAMES = frozenset({
    "SSH_AUTH_SOCK", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
})


def without_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """Returns ``environ`` less the cloud credentials and the SSH agent (:data:`CREDENTIAL_PREFIXES`,
    :data:`CREDENTIAL_NAMES`): the environment the payload and every other command on this computer run with."""
    return {name: value for name, value in environ.items()
            if name not in CREDENTIAL_NAMES and not name.startswith(CREDENTIAL_PREFIXES)}


@dataclass(frozen=True)
class CommandResult:
    """What a shell command on the machine returned."""

    exit_code: int
    stdout: bytes
    stderr: bytes


class Transport(Protocol):
    """Runs shell commands on one machine and moves bytes to and from it.

    After :meth:`close` every operation raises RemoteError at once, without reaching for the machine: a run that
    gives a machine up (evicted, or the run is ending) is not held up by it.
    """

    def run(self, command: str, *, timeout: float = 60.0) -> CommandResult:
        """Runs a shell command string and returns its exit code and output."""
        ...

    def read_to_file(self, command: str, path: Path, *, timeout: float = 600.0) -> CommandResult:
        """Runs a shell command string, streaming its stdout into ``path`` on this computer (never whole in
        memory); the result's ``stdout`` is empty."""
        ...

    def put_bytes(
        self, data: bytes, remote_path: str, *, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Writes ``data`` to a file on the machine, creating or replacing it; ``progress(sent, total)``."""
        ...

    def put_file(
        self, local_path: Path, remote_path: str, *, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Copies a file of this computer to the machine as :meth:`put_bytes` does, read in chunks."""
        ...

    def close(self) -> None:
        """Releases the connection; later operations raise RemoteError."""
        ...


class LocalTransport:
    """The local dev box as a machine: commands run in ``/bin/sh`` subprocesses, without the cloud credentials and
    the SSH agent of this process's environment (:func:`without_credentials`)."""

    def __init__(self) -> None:
        self._closed = False

    def run(self, command: str, *, timeout: float = 60.0) -> CommandResult:
        """Runs ``command`` with ``/bin/sh -c``; a timeout, or a closed transport, raises RemoteError."""
        return self._run(command, timeout, subprocess.PIPE)

    def read_to_file(self, command: str, path: Path, *, timeout: float = 600.0) -> CommandResult:
        """Runs ``command`` with its stdout going straight into ``path`` (created or truncated)."""
        with path.open("wb") as sink:
            return self._run(command, timeout, sink)

    def _run(self, command: str, timeout: float, stdout: Any) -> CommandResult:
        if self._closed:
            raise RemoteError(f"the transport is closed: not running {command[:80]}")
        try:
            completed = subprocess.run(
                ["/bin/sh", "-c", command], stdout=stdout, stderr=subprocess.PIPE, timeout=timeout,
                stdin=subprocess.DEVNULL, env=without_credentials(os.environ),
            )
        except subprocess.TimeoutExpired as error:
            raise RemoteError(f"command timed out after {timeout:g} s: {command[:120]}") from error
        return CommandResult(completed.returncode, completed.stdout or b"", completed.stderr)

    def put_bytes(
        self, data: bytes, remote_path: str, *, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Writes the file atomically (temporary name, then rename)."""
        self._place(remote_path, lambda tmp: tmp.write_bytes(data), len(data), progress)

    def put_file(
        self, local_path: Path, remote_path: str, *, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Copies the file atomically (temporary name, then rename), in chunks."""
        self._place(remote_path, lambda tmp: shutil.copyfile(local_path, tmp), local_path.stat().st_size, progress)

    def _place(
        self, remote_path: str, write: Callable[[Path], object], size: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        if self._closed:
            raise RemoteError(f"the transport is closed: not writing {remote_path}")
        path = Path(remote_path)
        tmp = path.with_name(path.name + ".part")
        write(tmp)
        os.replace(tmp, path)
        if progress is not None:
            progress(size, size)

    def close(self) -> None:
        """Nothing to release for local subprocesses; later operations raise RemoteError, as over SSH."""
        self._closed = True


def check(transport: Transport, command: str, *, what: str, timeout: float = 60.0) -> bytes:
    """Runs a command that must succeed and returns its stdout.

    Raises:
        RemoteError: the command exited non-zero; the message names ``what`` and the command's stderr.
    """
    return _succeeded(transport.run(command, timeout=timeout), what).stdout


def check_to_file(transport: Transport, command: str, path: Path, *, what: str, timeout: float = 600.0) -> None:
    """Runs a command that must succeed, its stdout streamed into ``path`` (:meth:`Transport.read_to_file`).

    Raises:
        RemoteError: the command exited non-zero; the message names ``what`` and the command's stderr.
    """
    _succeeded(transport.read_to_file(command, path, timeout=timeout), what)


def _succeeded(result: CommandResult, what: str) -> CommandResult:
    if result.exit_code != 0:
        stderr = result.stderr.decode(errors="replace").strip().splitlines()
        raise RemoteError(f"{what} failed (exit {result.exit_code}): {stderr[-1] if stderr else 'no output'}")
    return result
