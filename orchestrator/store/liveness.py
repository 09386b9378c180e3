"""Whether the process that holds a run (or a lease, or a campaign) is still there: a pid recorded with its host."""

from __future__ import annotations

import socket
from datetime import datetime


def process_alive(pid: int, *, started_by: datetime | None = None) -> bool:
    """Returns whether process ``pid`` is running (and, with ``started_by``, had started by then).

    A pid is reused once its process is gone; a process that started after ``started_by`` is another one. A
    zombie (exited, not yet reaped) is not running.
    """
    import psutil  # only reads of unfinished runs need it: `orchestrate --help` does not pay for it

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
        # psutil lets FileNotFoundError through when the process is reaped between two reads of /proc/PID.
        return False
    except psutil.AccessDenied:
        return True  # exists, owned by another user
    # Start times are coarse (clock ticks): a second of slack.
    return started_by is None or started <= started_by.timestamp() + 1.0


def orchestrator_gone(pid: int | None, host: str | None, created_at: str) -> bool:
    """True when the run's orchestrator ran on this machine and its process is no longer there."""
    if pid is None or host != socket.gethostname():
        return False  # recorded before schema 4, or run from another machine: cannot tell
    try:
        created = datetime.fromisoformat(created_at)
    except ValueError:
        created = None
    return not process_alive(int(pid), started_by=created)
