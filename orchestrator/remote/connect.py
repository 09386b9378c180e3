"""How to reach a machine: the local box through /bin/sh, everything else through pinned SSH."""

from __future__ import annotations

from pathlib import Path

from orchestrator.providers.base import Machine
from orchestrator.remote.transport import LocalTransport, Transport


def known_hosts_path(home: Path) -> Path:
    """Returns where trusted-on-first-use host keys are pinned."""
    return home / "known_hosts"


def transport_to(machine: Machine, home: Path, *, connect_timeout_s: float = 300.0) -> Transport:
    """Returns a connected transport to the machine.

    Raises:
        HostKeyMismatch: the machine's host key is not the pinned one (nothing was sent).
        ConnectTimeout: the machine did not answer within ``connect_timeout_s``.
    """
    if machine.provider == "local":
        return LocalTransport()
    from orchestrator.remote.ssh import SSHTarget, SSHTransport

    target = SSHTarget(
        host=machine.address,
        port=machine.port,
        user=machine.user,
        key_path=Path(machine.extra["key_path"]),
        host_key=machine.host_key,
        trust_on_first_use=machine.extra.get("trust_on_first_use") == "true",
    )
    ssh = SSHTransport(target, known_hosts=known_hosts_path(home), connect_timeout_s=connect_timeout_s)
    ssh.connect()
    transport: Transport = ssh
    return transport
