"""`orchestrate ssh`: OpenSSH's own client, logged in with the run's key and the host keys the store pinned — only.

No ``~/.ssh/config``, no agent, no other identity, no known_hosts but a temporary one holding the pinned keys (the
machine's, and its bastion's); a different key is refused by ssh itself ("Host key verification failed").
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from orchestrator.errors import SpecError
from orchestrator.machine import Access, Machine


def _known_hosts_line(access: Access) -> str:
    name = access.host if access.port == 22 else f"[{access.host}]:{access.port}"
    key = (access.host_key or "").strip()
    if not key or key.startswith("SHA256:"):
        raise SpecError(
            "host_key", key or None, f"the full public key line of {access.describe()} (ssh-ed25519 AAAA…)",
            hint="OpenSSH pins whole keys, not fingerprints: put the key line in the inventory's host_key",
        )
    return f"{name} {' '.join(key.split()[:2])}\n"


def _options(access: Access, known_hosts: Path) -> list[str]:
    if access.key_path is None:
        raise SpecError("key_path", None, f"a private key that logs in to {access.describe()}")
    return [
        "-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "ForwardAgent=no", "-o", "ForwardX11=no", "-o", "BatchMode=yes",
        "-i", str(Path(access.key_path).expanduser()), "-p", str(access.port),
    ]


def ssh_argv(machine: Machine, command: Sequence[str], known_hosts: Path) -> list[str]:
    """The command line that opens a shell (or runs ``command``) in the machine's run directory.

    Writes the pinned host keys to ``known_hosts`` (the caller removes it).

    Raises:
        SpecError: the machine's pinned key is only a fingerprint (OpenSSH needs the key), or no key logs in.
    """
    access = machine.access
    here = f"cd {shlex.quote(machine.run_dir)} 2>/dev/null || cd {shlex.quote(machine.environment.workdir)}"
    remote = f"{here}; {shlex.join(command)}" if command else f'{here}; exec "${{SHELL:-/bin/sh}}" -l'
    if access.via == "local":
        return ["/bin/sh", "-c", remote]
    lines = [_known_hosts_line(access)]
    argv = ["ssh", *(["-t"] if not command else []), *_options(access, known_hosts)]
    if access.bastion is not None:
        jump = access.bastion
        lines.append(_known_hosts_line(jump))
        proxy = ["ssh", *_options(jump, known_hosts), "-W", "%h:%p", f"{jump.user}@{jump.host}"]
        argv += ["-o", "ProxyCommand=" + shlex.join(proxy)]
    known_hosts.write_text("".join(lines))
    os.chmod(known_hosts, 0o600)
    return [*argv, f"{access.user}@{access.host}", remote]
