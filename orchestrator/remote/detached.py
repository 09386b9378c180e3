"""The payload run detached on a machine, over any :class:`~orchestrator.remote.transport.Transport`.

The detached-run protocol, in the run directory on the machine:
    ``pid``        the payload's process-group id (written by the wrapper shell, its session leader)
    ``payload.log`` the payload's stdout and stderr
    ``exit_code``  written atomically once the payload has exited
"""

from __future__ import annotations

import codecs
import secrets
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.errors import PayloadFailed, RemoteError
from orchestrator.remote.transport import Transport, check

PID_FILE = "pid"
LOG_FILE = "payload.log"
EXIT_FILE = "exit_code"
STARTED_MARK = ".started"  # a directory: mkdir is atomic, so only the first start command launches
# One poll reads at most this much of the log, so a chatty payload cannot stall the loop.
MAX_LOG_CHUNK = 1 << 20
# The collect step keeps at most the last this-many bytes of each machine's log.
MAX_KEPT_LOG = 1 << 20
# The live echo is a tail, not an archive: when the log is more than this far ahead of what was shown (a payload
# writing faster than a terminal can print), the echo skips to the log's last chunk and says how much it left out.
MAX_ECHO_LAG = 4 * MAX_LOG_CHUNK
# `orchestrate logs` gives out a line longer than this in pieces, so an endless line cannot fill its memory.
MAX_LINE = MAX_LOG_CHUNK
# While the payload writes nothing (training between its progress lines), the wait between polls doubles up to this
# many times the base interval: each poll is a command on the machine (a shell and a few processes, ~18 ms of CPU
# on the local box), and on a small box that CPU is taken from the payload being measured.
QUIET_POLL_BACKOFF = 4


@dataclass(frozen=True)
class Collected:
    """The payload's log and one file of the run directory, as the collect step fetches them."""

    log: bytes  # the log's last bytes (all of it when not truncated)
    log_skipped: int  # bytes of the log's start left out (0: the whole log; also when there is no log)
    file: bytes | None  # None: the file is absent

    def kept_log(self) -> tuple[str, int]:
        """The log as text and the bytes of its start left out; a cut log starts at its first whole line."""
        if self.log_skipped == 0 or b"\n" not in self.log:
            return self.log.decode(errors="replace"), self.log_skipped
        partial, _, whole = self.log.partition(b"\n")
        return whole.decode(errors="replace"), self.log_skipped + len(partial) + 1

    def log_tail(self, lines: int = 30) -> str:
        """The log's last ``lines`` lines."""
        return "".join(self.kept_log()[0].splitlines(keepends=True)[-lines:])


@dataclass(frozen=True)
class PollResult:
    """One look at a detached payload: its status and the log bytes since the last look."""

    status: str  # "running", "exited" or "vanished" (dead without an exit code)
    exit_code: int | None
    log: bytes
    log_size: int = 0  # the log's size in bytes as this look found it (at least the offset read up to)


class LineBuffer:
    """Cuts log bytes read piece by piece into whole lines; an unfinished last line waits for its end.

    Args:
        max_line: bytes an unfinished line may hold; past it the line's start is given out as a line of its own
            (cut at a character's start), so a payload that never ends its line cannot fill the reader's memory.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._pending = b""
        self.max_line = max_line

    @property
    def pending(self) -> int:
        """Bytes read and not yet given out (the unfinished last line)."""
        return len(self._pending)

    def feed(self, data: bytes) -> str:
        """Adds bytes and returns the whole lines they complete ("" when none)."""
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        if len(data) - cut > self.max_line:
            cut = len(data) - self.max_line
            for _ in range(3):  # not inside a UTF-8 character: move past its continuation bytes
                if data[cut] & 0xC0 != 0x80:
                    break
                cut += 1
            self._pending = data[cut:]
            return data[:cut].decode(errors="replace") + "\n"
        self._pending = data[cut:]
        return data[:cut].decode(errors="replace")

    def flush(self) -> str:
        """Returns the unfinished last line, ended with a newline ("" when there is none)."""
        rest, self._pending = self._pending, b""
        return rest.decode(errors="replace") + "\n" if rest else ""


class DetachedProcess:
    """A payload started in its own session on a machine, observed through files in its run directory.

    Args:
        transport: how to reach the machine.
        run_dir: the run directory on the machine.
    """

    def __init__(self, transport: Transport, run_dir: str) -> None:
        self.transport = transport
        self.run_dir = run_dir
        self.log_offset = 0

    def start(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        """Starts ``argv`` detached (own session and process group) and returns its process-group id.

        The wrapper shell writes its pid (which is the group id), runs the payload with output to the log,
        and writes the exit code atomically when it ends. Stdin is closed; nothing ties it to this process.
        The command is idempotent (a ``mkdir`` marker guards the launch), so a transport may re-run it after a
        dropped connection without starting the payload twice.
        """
        payload = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), *argv])
        wrapper = (
            f"echo $$ > {PID_FILE}.part && mv {PID_FILE}.part {PID_FILE}; {payload} > {LOG_FILE} 2>&1; "
            f"echo $? > {EXIT_FILE}.part && mv {EXIT_FILE}.part {EXIT_FILE}"
        )
        command = (
            f"cd {shlex.quote(self.run_dir)} && "
            f"if mkdir {STARTED_MARK} 2>/dev/null; then rm -f {PID_FILE} {EXIT_FILE} && "
            f"(setsid /bin/sh -c {shlex.quote(wrapper)} < /dev/null > /dev/null 2>&1 &); fi && "
            f"for i in $(seq 1 200); do [ -s {PID_FILE} ] && cat {PID_FILE} && exit 0; sleep 0.05; done; exit 1"
        )
        out = check(self.transport, command, what="starting the payload", timeout=30.0)
        try:
            return int(out.decode().strip())
        except ValueError as error:
            raise RemoteError(f"starting the payload gave no process id: {out[:80]!r}") from error

    def poll(self) -> PollResult:
        """Reads the status, the log's size and the log bytes written since the last poll (one command per poll)."""
        offset = self.log_offset
        command = (
            f"cd {shlex.quote(self.run_dir)} || exit 3; "
            f"if [ -f {EXIT_FILE} ]; then echo exited $(cat {EXIT_FILE}); "
            # A zombie (exited, not yet reaped) is not running: ask ps for the state, not kill -0.
            f'elif [ -s {PID_FILE} ] && ps -o stat= -p "$(cat {PID_FILE})" 2>/dev/null | grep -qv "^Z"; '
            f"then echo running; "
            # It may have ended between the two tests: look for the exit code once more.
            f"elif [ -f {EXIT_FILE} ]; then echo exited $(cat {EXIT_FILE}); "
            f"else echo vanished; fi; "
            f"wc -c < {LOG_FILE} 2>/dev/null || echo 0; "
            f"tail -c +{offset + 1} {LOG_FILE} 2>/dev/null | head -c {MAX_LOG_CHUNK}"
        )
        result = self.transport.run(command, timeout=60.0)
        if result.exit_code == 3:
            raise RemoteError(f"the run directory {self.run_dir} is gone from the machine")
        head, _, rest = result.stdout.partition(b"\n")
        size_text, _, log = rest.partition(b"\n")
        words = head.decode(errors="replace").split()
        status = words[0] if words else "vanished"
        exit_code = int(words[1]) if status == "exited" and len(words) > 1 and words[1].lstrip("-").isdigit() else None
        if status == "exited" and exit_code is None:
            status = "vanished"
        self.log_offset += len(log)
        # The log may have grown between measuring and reading it: what was read counts too.
        size = int(size_text.strip()) if size_text.strip().isdigit() else 0
        return PollResult(status=status, exit_code=exit_code, log=log, log_size=max(size, self.log_offset))

    def kill(self, *, grace_s: float = 5.0, then: str = "") -> None:
        """Stops the payload's whole process group: SIGTERM, then SIGKILL after ``grace_s``.

        Args:
            then: a shell command run right after, in the same round trip (the clean-up removes the directory).
        """
        command = (
            f"cd {shlex.quote(self.run_dir)} 2>/dev/null && [ -s {PID_FILE} ] || exit 0; "
            f'pgid="$(cat {PID_FILE})"; kill -s TERM -- "-$pgid" 2>/dev/null || exit 0; '
            # Zombies (exited, not yet reaped) do not count as alive.
            f"i=0; while ps -eo pgid=,stat= | awk -v g=\"$pgid\" '$1 == g && $2 !~ /^Z/' | grep -q . "
            f"&& [ $i -lt {max(1, int(grace_s * 10))} ]; do "
            f"sleep 0.1; i=$((i+1)); done; "
            f'kill -s KILL -- "-$pgid" 2>/dev/null; exit 0'
        )
        if then:
            command = f"( {command} ); {then}"
        result = self.transport.run(command, timeout=grace_s + 120.0)
        if then and result.exit_code != 0:
            stderr = result.stderr.decode(errors="replace").strip().splitlines()
            raise RemoteError(f"{then[:80]} failed (exit {result.exit_code}): {stderr[-1] if stderr else 'no output'}")

    def log_tail(self, lines: int = 30) -> str:
        """Returns the last ``lines`` lines of the payload's log."""
        command = f"tail -n {int(lines)} {shlex.quote(f'{self.run_dir}/{LOG_FILE}')} 2>/dev/null"
        return self.transport.run(command, timeout=60.0).stdout.decode(errors="replace")

    def log_and_file(self, name: str, *, max_log_bytes: int = MAX_KEPT_LOG) -> Collected:
        """Returns the log's last ``max_log_bytes`` bytes (and how much of its start was left out) and a file of the
        run directory (None if absent), in one round trip: the parts are split at a random marker that neither can
        contain by chance."""
        marker = f"--orchestrate-{secrets.token_hex(16)}--"
        log_path = shlex.quote(f"{self.run_dir}/{LOG_FILE}")
        path = shlex.quote(f"{self.run_dir}/{name}")
        command = (f"if [ -f {log_path} ]; then wc -c < {log_path}; tail -c {int(max_log_bytes)} {log_path}; "
                   f"else echo 0; fi; "
                   f"printf '\\n%s\\n' {marker}; "
                   f"if [ -f {path} ]; then echo present; cat {path}; else echo absent; fi")
        out = self.transport.run(command, timeout=120.0).stdout
        head, _, rest = out.partition(b"\n" + marker.encode() + b"\n")
        size_text, _, log = head.partition(b"\n")
        status, _, content = rest.partition(b"\n")
        size = int(size_text.strip()) if size_text.strip().isdigit() else len(log)
        # The log may have grown between measuring and reading it: what was read is what counts.
        return Collected(log=log, log_skipped=max(0, size - len(log)),
                         file=content if status == b"present" else None)


def follow(
    process: DetachedProcess,
    *,
    timeout_s: float,
    on_output: Callable[[str], None],
    poll_interval_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    cancelled: Callable[[], bool] = lambda: False,
    max_lag: int = MAX_ECHO_LAG,
    max_poll_interval_s: float | None = None,
) -> int:
    """Tails a detached payload until it exits, and returns its exit code.

    The tail keeps up with any payload: when the log runs more than ``max_lag`` bytes ahead of what was shown, it
    skips to the log's last chunk and tells ``on_output`` how much it left out (the collect step keeps the log's
    end regardless). Undecodable bytes are shown as U+FFFD; a character split between two reads is not.

    Args:
        process: a started payload.
        timeout_s: wall-clock budget; past it the process group is killed.
        on_output: called with each chunk of new log text.
        poll_interval_s: seconds between polls while the payload writes; after a poll that finds no new output the
            wait doubles, up to ``max_poll_interval_s``, and new output brings it back.
        clock: monotonic seconds (injected in tests).
        sleep: how to wait between polls (injected in tests).
        cancelled: returns True when the run is being stopped (an interrupt seen by another thread).
        max_lag: bytes the log may run ahead of the echo before the echo skips.
        max_poll_interval_s: the longest wait between polls; None: ``QUIET_POLL_BACKOFF`` x ``poll_interval_s``.

    Raises:
        PayloadFailed: the payload ran past ``timeout_s``, vanished without an exit code, or was cancelled.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def show(result: PollResult) -> None:
        if text := decoder.decode(result.log):
            on_output(text)
        behind = result.log_size - process.log_offset
        if behind > max_lag:
            skipped = behind - MAX_LOG_CHUNK
            process.log_offset += skipped
            decoder.reset()
            on_output(f"[orchestrate: {skipped} bytes of the payload's log not shown here: it is written faster than "
                      f"it can be shown; `orchestrate logs` shows the last {MAX_KEPT_LOG // 1024} KiB after the run]\n")

    deadline = clock() + timeout_s
    longest = QUIET_POLL_BACKOFF * poll_interval_s if max_poll_interval_s is None else max_poll_interval_s
    interval = poll_interval_s
    while True:
        result = process.poll()
        show(result)
        if result.status == "exited" and result.exit_code is not None:
            # The exit code is written after the payload ends, so the log read in the same poll is complete
            # unless it was larger than one chunk: drain it.
            while (rest := process.poll()).log:
                show(rest)
            if text := decoder.decode(b"", final=True):
                on_output(text)
            return result.exit_code
        if result.status == "vanished":
            raise PayloadFailed("the payload died without writing an exit code (killed from outside?)")
        if cancelled():
            raise PayloadFailed("stopped: the run is being interrupted")
        if clock() >= deadline:
            process.kill()
            raise PayloadFailed(f"the payload ran past the run timeout of {timeout_s:g} s and was killed",
                                hint="raise timeout_s in the run spec")
        interval = poll_interval_s if result.log else min(max(longest, poll_interval_s), 2 * interval)
        sleep(interval)
