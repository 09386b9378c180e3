"""Spot evictions: a spot machine that vanishes mid-run is replaced, and its training resumes on the new machine from
the checkpoint the orchestrator copied back.

While a one-machine spot run executes, :class:`CheckpointKeeper` reads how many epochs the payload's
``BackupAndRestore`` backups have completed (``<run dir>/checkpoints/*/training_metadata.json``, the payload's own
layout, see ``keras_bench.training.checkpoint``) at most every ``poll_s``; once ``every_epochs`` more are done it
copies the run directory's ``checkpoints/`` back (a tar over the run's SSH connection, streamed to a file: backups
of any size never sit in memory), keeps only regular files and directories under ``checkpoints/`` and stores that at
``$ORCHESTRATE_HOME/checkpoints/<run>/checkpoints.tar.gz``.
When the execute step fails and the provider no longer lists the machine (:func:`confirm_gone`), the run's own
``replace_evicted`` step (``orchestrator.lifecycle``) records the eviction, launches a replacement (the plan's
placements from the first), pushes the payload and this archive, and starts the payload again: its backups make it
resume after the last completed epoch it had copied back. This module knows no run: it is handed what it asks.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import shutil
import tarfile
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.remote.payload import SAFE_EXTRACT
from orchestrator.remote.session import Session
from orchestrator.remote.transport import check, check_to_file

CHECKPOINTS = "checkpoints"  # the payload's backups, under its run directory
ARCHIVE = "checkpoints.tar.gz"
MAX_EVICTIONS = 3  # replacements one run makes before it gives up
# After a spot machine's payload or SSH connection fails, how long the provider is asked (every
# ``RunContext.eviction_poll_s``) whether the machine is gone: a reclaimed machine dies before its cloud lists it
# as terminated, so one look at once can see it still there and call an eviction a plain failure.
EVICTION_CONFIRM_S = 30.0
# Once a listing misses the machine, the watch asks again after at most this long (not a whole poll): two misses in a
# row are the evidence, and the second need not cost another ``eviction_poll_s``.
RECHECK_S = 2.0

_EPOCH = re.compile(rb'"epoch"\s*:\s*(\d+)')


def clean_archive(raw: Path, clean: Path) -> int:
    """Re-packs a tar copied from a machine into ``clean``: regular files and directories under ``checkpoints/``
    only (no links, devices, absolute paths or ``..``), gzip-compressed for the payload's safe extraction. Both
    archives are streamed (tarfile's ``r|*`` and ``w|gz`` modes): one member's chunk in memory at a time.

    Returns:
        The number of files the clean archive holds.

    Raises:
        tarfile.TarError: ``raw`` is not a tar archive.
    """
    files = 0
    with tarfile.open(str(raw), mode="r|*") as source, tarfile.open(str(clean), mode="w|gz") as out:
        for member in source:
            name = posixpath.normpath(member.name)
            inside = name == CHECKPOINTS or name.startswith(CHECKPOINTS + "/")
            if not inside or member.name.startswith("/") or ".." in member.name.split("/"):
                continue
            if member.isdir():
                out.addfile(_dir_info(name))
            elif member.isfile():
                data = source.extractfile(member)
                if data is None:
                    continue
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = member.size, 0o600, int(member.mtime)
                out.addfile(info, data)
                files += 1
    return files


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o700
    return info


def completed_epochs(session: Session) -> int:
    """Epochs the payload's backups on the machine have completed, summed over its backups (a grid has several).

    Raises:
        RemoteError: the machine could not be asked.
    """
    run_dir = shlex.quote(session.run_dir)
    out = check(session.reach(), f"cat {run_dir}/{CHECKPOINTS}/*/training_metadata.json 2>/dev/null || true",
                what=f"reading the backups' epochs on {session.machine.id}", timeout=30)
    return sum(int(match) for match in _EPOCH.findall(out))


@dataclass
class CheckpointKeeper:
    """Copies a run's payload backups back to this computer every ``every_epochs`` completed epochs.

    Args:
        directory: where the archive is kept (``$ORCHESTRATE_HOME/checkpoints/<run>``).
        every_epochs: how many newly completed epochs make a copy worth taking.
        clock: monotonic seconds (injected in tests).
        poll_s: the least time between two looks at the machine.
    """

    directory: Path
    every_epochs: int = 1
    clock: Callable[[], float] = field(default=lambda: 0.0)
    poll_s: float = 5.0
    epochs: int = 0  # completed epochs in the archive kept
    copies: int = 0
    _next: float = float("-inf")

    @property
    def archive(self) -> Path:
        """The archive of the newest copy."""
        return self.directory / ARCHIVE

    def tick(self, session: Session) -> None:
        """Looks at the machine (at most every ``poll_s``) and copies the backups back when enough epochs are new.
        Best effort: a failure here is the execute step's to notice, not this one's."""
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.poll_s
        try:
            done = completed_epochs(session)
            if done >= self.epochs + self.every_epochs:
                self.copy_back(session, done)
        except Exception:  # noqa: BLE001 - never let a copy break the run it protects
            return

    def copy_back(self, session: Session, epochs: int) -> None:
        """Copies ``checkpoints/`` of the run directory back, cleaned, replacing the previous copy atomically —
        only when no epoch completed while it was read (a backup being written is not copied half-done).

        The machine's tar streams into a file beside the archive, is cleaned file to file into ``.part`` and
        renamed over the archive: memory stays flat whatever the backups weigh.
        """
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        raw = self.archive.with_name(ARCHIVE + ".raw")
        partial = self.archive.with_name(ARCHIVE + ".part")
        try:
            for _ in range(3):  # an epoch that ends while the backups are read spoils the copy: read them again
                check_to_file(session.reach(), f"tar -cf - -C {shlex.quote(session.run_dir)} {CHECKPOINTS}", raw,
                              what=f"copying the backups back from {session.machine.id}", timeout=600)
                done = completed_epochs(session)
                if done == epochs:
                    break
                epochs = done
            else:
                return  # training moves faster than a copy: the next look tries again
            if not clean_archive(raw, partial):
                return
            partial.replace(self.archive)
        finally:
            raw.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
        self.epochs, self.copies = epochs, self.copies + 1

    def restore(self, session: Session) -> str:
        """Puts the newest copy into a (new) machine's run directory; returns the event's detail."""
        if not self.archive.is_file():
            return "no backup was copied back: training starts again from epoch 1"
        remote = f"{session.run_dir}/.{ARCHIVE}"
        session.reach().put_file(self.archive, remote)
        check(session.reach(), f"{shlex.quote(session.python)} -c {shlex.quote(SAFE_EXTRACT)} {shlex.quote(remote)} "
              f"{shlex.quote(session.run_dir)} && rm -f {shlex.quote(remote)}",
              what=f"unpacking the backups on {session.machine.id}")
        return f"backups of {self.epochs} completed epoch(s) restored"

    def forget(self) -> None:
        """Removes the kept copies (the run has ended)."""
        shutil.rmtree(self.directory, ignore_errors=True)


class EvictionWatch:
    """While a one-machine spot run executes, asks every ``poll_s`` whether the machine is still listed; once two
    listings in a row miss it (the second asked :data:`RECHECK_S` after the first), closes the run's SSH connection
    for good, so that the execute step's next poll fails at once (rather than reconnecting to an address that will
    not answer again) and the run's replacement step takes over.

    Args:
        listed: whether the provider lists the machine now; raises when it cannot tell.
    """

    def __init__(self, listed: Callable[[], bool], session: Session, poll_s: float) -> None:
        self.listed, self.session, self.poll_s = listed, session, poll_s
        self.gone = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"evict-watch-{session.name}", daemon=True)

    def __enter__(self) -> EvictionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _watch(self) -> None:
        missing = 0  # listings in a row without the machine: a cloud's listing may lag; one miss is not enough
        while not self._stop.wait(min(self.poll_s, RECHECK_S) if missing else self.poll_s):
            try:
                listed = self.listed()
            except Exception:  # noqa: BLE001 - cannot tell now: ask again at the next poll
                continue
            missing = 0 if listed else missing + 1
            if missing >= 2:
                self.gone = True
                if self.session.transport is not None:
                    with suppress(Exception):
                        self.session.transport.close()
                return


def confirm_gone(
    listed: Callable[[], bool], *, clock: Callable[[], float], wait: Callable[[float], bool], poll_s: float
) -> bool:
    """Whether the provider stops listing the machine within :data:`EVICTION_CONFIRM_S`, asked every ``poll_s``;
    False when it is still listed then, when it cannot be asked, or when ``wait`` says the run is being stopped.

    Args:
        listed: whether the provider lists the machine now; raises when it cannot tell.
        wait: waits up to the given seconds; True when the run was asked to stop meanwhile.
    """
    deadline = clock() + EVICTION_CONFIRM_S
    while True:
        try:
            if not listed():
                return True
        except Exception:  # noqa: BLE001 - cannot tell: the execute step's own failure stands
            return False
        if clock() >= deadline or wait(poll_s):
            return False
