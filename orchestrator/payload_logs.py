"""A run's payload log: kept in the store after the run, read live from its machines while it runs (``orchestrate
logs``). Re-exported by :mod:`orchestrator.api`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import OrchestrateError, SpecError
from orchestrator.remote.connect import transport_to
from orchestrator.remote.detached import MAX_KEPT_LOG, MAX_LOG_CHUNK, DetachedProcess, LineBuffer
from orchestrator.remote.transport import Transport
from orchestrator.store import FINAL_STATES, MachineRow, Store, default_home


@dataclass(frozen=True)
class LogText:
    """Whole lines of a machine's payload log, each prefixed with ``[machine] `` when several machines are shown."""

    machine_id: str
    text: str


@dataclass(frozen=True)
class LogNote:
    """A remark about the log shown (where it comes from, what is missing); the CLI prints it on stderr."""

    text: str


def logs(
    run_id: str, *, follow: bool = False, machine: str | None = None, home: Path | None = None,
    poll_interval_s: float = 0.5,
) -> Iterator[LogText | LogNote]:
    """Yields a run's payload log, per machine.

    A run that has ended: the log each machine's collect step kept in the store. A run still going on: read live
    from each machine through its recorded access; with ``follow``, read on until every payload has exited, the
    run has ended, or its orchestrator is gone and so is the payload. An abandoned run: live from the machines
    that answer, else what the store kept, saying so.

    Args:
        run_id: a run id or a unique prefix of one.
        follow: keep reading a running payload's log as it grows (and wait for a payload not started yet).
        machine: only this machine's log.
        home: the Orchestrate home.
        poll_interval_s: seconds between reads while following.

    Raises:
        UnknownRun: the id matches no run (or several).
        SpecError: ``machine`` is not one of the run's machines.
    """
    home = home or default_home()
    with Store(home) as store:
        full_id = store.resolve_run_id(run_id)
        row = store.get_run(full_id)
        while follow and row.state == "provisioning" and not row.abandoned:
            time.sleep(poll_interval_s)  # the payload starts when the run moves on to "running"
            row = store.get_run(full_id)
        stored = {log.machine_id: log for log in store.logs(full_id)}
        rows = store.machines(full_id)
        up = [m for m in rows if m.machine is not None and m.state in ("running", "cleanup_failed")]
        names = list(dict.fromkeys([*(str(m.machine_id) for m in rows if m.machine_id), *stored]))
        if machine is not None and machine not in names:
            raise SpecError("--machine", machine, "one of the run's machines: " + (", ".join(names) or "none"))
        live = row.state not in FINAL_STATES and bool(up)
        shown = [name for name in ([str(m.machine_id) for m in up] if live else list(stored))
                 if machine in (None, name)]

        def text(machine_id: str, lines: str) -> LogText:
            if len(shown) > 1:
                lines = "".join(f"[{machine_id}] {line}" for line in lines.splitlines(keepends=True))
            return LogText(machine_id, lines)

        def kept(machine_id: str, shown_bytes: int, why: str = "") -> Iterator[LogText | LogNote]:
            """What the store kept of a machine's log, from byte ``shown_bytes`` of the log on (``why``: why the
            machine was not read, said when the store has nothing either)."""
            # Read again: a run going on keeps its logs when it collects, after this command started.
            log = next((log for log in store.logs(full_id) if log.machine_id == machine_id), None)
            if log is None:
                yield LogNote(f"{machine_id}: {why + '; ' if why else ''}the store kept no log of it")
                return
            if log.truncated > shown_bytes:
                yield LogNote(f"{machine_id}: the log's first {log.truncated} bytes were not kept (the store keeps "
                              f"the last {MAX_KEPT_LOG // 1024} KiB of each machine's log)")
            rest = log.text.encode()[max(0, shown_bytes - log.truncated):].decode(errors="replace")
            if rest:
                yield text(machine_id, rest if rest.endswith("\n") else rest + "\n")

        if row.state == "provisioning" and not row.abandoned:
            yield LogNote(f"run {full_id} has not started its payload yet (`--follow` waits for it)")
        elif live:
            if row.abandoned:
                yield LogNote(f"run {full_id} is abandoned (its orchestrator is gone): reading its machines' logs")
            yield from _live_logs(store, full_id, [m for m in up if str(m.machine_id) in shown], follow=follow,
                                  home=home, poll_interval_s=poll_interval_s, text=text, kept=kept)
        elif not stored and row.log_tail and machine is None:
            yield LogNote(f"run {full_id} kept only its log's last lines (it ended before whole logs were kept)")
            yield LogText("", row.log_tail if row.log_tail.endswith("\n") else row.log_tail + "\n")
        elif not shown:
            yield LogNote(f"run {full_id} ({row.state}) has no payload log: its payload never ran")
        else:
            for machine_id in shown:
                yield from kept(machine_id, 0)


def _live_logs(
    store: Store, run_id: str, machines: Sequence[MachineRow], *, follow: bool, home: Path, poll_interval_s: float,
    text: Callable[[str, str], LogText], kept: Callable[[str, int, str], Iterator[LogText | LogNote]],
) -> Iterator[LogText | LogNote]:
    """Reads each machine's log through its recorded access: what is there, or (following) until it ends."""
    transports: list[Transport] = []
    readers: dict[str, tuple[DetachedProcess, LineBuffer]] = {}
    try:
        for row in machines:
            assert row.machine is not None and row.machine_id is not None
            try:
                transports.append(transport_to(row.machine.access, home, 30.0))
            except OrchestrateError as error:
                yield LogNote(f"{row.machine_id}: cannot reach the machine ({error}); showing what the store kept")
                yield from kept(row.machine_id, 0, "")
                continue
            readers[row.machine_id] = (DetachedProcess(transports[-1], row.machine.run_dir), LineBuffer())
        while readers:
            run = store.get_run(run_id)
            last_look = not follow or run.state in FINAL_STATES
            for machine_id, (process, lines) in list(readers.items()):
                try:
                    result = process.poll()
                    chunk = result.log
                    # Given out chunk by chunk, so a log of any size passes through in bounded memory.
                    while True:
                        if whole := lines.feed(chunk):
                            yield text(machine_id, whole)
                        if len(chunk) < MAX_LOG_CHUNK:  # less than a full chunk: that was all there was
                            break
                        chunk = process.poll().log
                except OrchestrateError as error:  # e.g. the run directory is gone: the run tore it down
                    del readers[machine_id]  # the run collected its log first: the rest is in the store
                    yield from kept(machine_id, process.log_offset - lines.pending, str(error))
                    continue
                # "vanished": not started yet (the run goes on), or dead without an exit code.
                gone = result.status == "exited" or (result.status == "vanished" and run.abandoned)
                if gone or last_look:
                    del readers[machine_id]
                    if rest := lines.flush():
                        yield text(machine_id, rest)
                    if result.status == "exited":
                        yield LogNote(f"{machine_id}: the payload exited with code {result.exit_code}")
                    elif result.status == "vanished" and process.log_offset == 0:
                        yield LogNote(f"{machine_id}: no payload runs there (not started yet, or killed)")
            if readers:
                time.sleep(poll_interval_s)
    finally:
        for transport in transports:
            transport.close()
