"""How to reach a machine: the transport is chosen from its :class:`~orchestrator.machine.Access`.

``via: local`` is this machine's ``/bin/sh``; ``via: ssh`` is a pinned SSH connection (through the bastion when
the access names one). Nothing here knows which provider made the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import SpecError
from orchestrator.machine import Access
from orchestrator.remote.transport import LocalTransport, Transport

if TYPE_CHECKING:
    from orchestrator.remote.ssh import SSHTarget

# What opens a transport to a machine: injectable, so the lifecycle can be driven in-process with a fake.
Connector = Callable[[Access, Path, float], Transport]


def known_hosts_path(home: Path) -> Path:
    """Returns where trusted-on-first-use host keys are pinned."""
    return home / "known_hosts"


def transport_to(access: Access, home: Path, connect_timeout_s: float = 300.0) -> Transport:
    """Returns a connected transport to the machine.

    Raises:
        HostKeyMismatch: the machine's (or the bastion's) host key is not the pinned one; nothing was sent.
        ConnectTimeout: the machine did not answer within ``connect_timeout_s``.
    """
    if access.via == "local":
        return LocalTransport()
    # Imported here, not at the top: it imports paramiko (0.7 s of a 0.8 s start, measured with `python -c`), which
    # the dev box's runs, `orchestrate logs` of a local run and every command that never opens SSH do not need.
    from orchestrator.remote.ssh import SSHTransport

    ssh = SSHTransport(_ssh_target(access), known_hosts=known_hosts_path(home), connect_timeout_s=connect_timeout_s)
    ssh.connect()
    transport: Transport = ssh
    return transport


def _ssh_target(access: Access) -> SSHTarget:
    """Returns the SSH target for ``access``, its bastion (and the bastion's own, if any) as ``proxy_jump``."""
    from orchestrator.remote.ssh import SSHTarget  # paramiko: see transport_to

    if access.key_path is None:
        raise SpecError("key_path", None, f"a private key path to log in to {access.describe()}")
    return SSHTarget(
        host=access.host,
        port=access.port,
        user=access.user,
        key_path=Path(access.key_path).expanduser(),
        host_key=access.host_key,
        trust_on_first_use=access.trust_on_first_use,
        proxy_jump=_ssh_target(access.bastion) if access.bastion is not None else None,
    )
