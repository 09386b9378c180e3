"""Issue 16, "long runs": a payload that writes 100 MB of log, a 5 MB line, bytes that are not UTF-8 and a NUL is
tailed live and stored without blocking or crashing, on the dev box and on a rented box over real SSH; the stored
log is capped at MAX_KEPT_LOG and says how much of its start it left out."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from orchestrator import api
from orchestrator.remote.detached import (
    EXIT_FILE,
    LOG_FILE,
    MAX_KEPT_LOG,
    MAX_LOG_CHUNK,
    PID_FILE,
    DetachedProcess,
    LineBuffer,
    follow,
)
from orchestrator.remote.transport import LocalTransport
from orchestrator.store import Store
from tests.conftest import FAKE_MAIN_HEADER, cli_env, run_cli
from tests.integration.conftest import client_key as client_key  # the fixtures
from tests.integration.conftest import make_host_key as make_host_key
from tests.integration.conftest import sshd as sshd
from tests.integration.conftest import sshd_binary as sshd_binary

LONG_LINE = 5 << 20
LINE = b"%08d the payload says something fairly long about its training progress, step by step\n"
LINES = 100 * 12000  # a hundred blocks of 12 000 lines of 90 bytes: 103 MiB
BAD_LINE = b"undecodable: \xff\xfe\x80 surrogate: \xed\xa0\x80 cut: \xe2\x82 nul: \x00 done\n"
LAST_LINE = b"the end, without a newline"
TOTAL = LONG_LINE + 1 + LINES * len(LINE % 0) + len(BAD_LINE) + len(LAST_LINE)
# Written in large blocks straight to the log (stdout and stderr both go there): about a second on this machine.
PAYLOAD = FAKE_MAIN_HEADER + f"""
out_ = sys.stdout.buffer
out_.write(b"x" * {LONG_LINE})
out_.write(b"\\n")
line = {LINE!r}
for block in range(100):
    out_.write(b"".join(line % (block * 12000 + i) for i in range(12000)))
out_.write({BAD_LINE!r})
out_.write({LAST_LINE!r})
out_.flush()
write([sample("train_throughput", "images_per_sec", 1.0)])
"""
REPLACED_LINE = "undecodable: \ufffd\ufffd\ufffd surrogate: \ufffd\ufffd\ufffd cut: \ufffd nul: \x00 done"
PEAK_RSS_LIMIT = 400 << 20


class _PeakRss:
    """Samples a process's resident memory in a thread until it ends; keeps the peak (a bound, not a timing)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        try:
            while self.process.is_running() and self.process.status() != psutil.STATUS_ZOMBIE:
                self.peak = max(self.peak, self.process.memory_info().rss)
                time.sleep(0.02)
        except psutil.NoSuchProcess:
            return


@pytest.fixture
def chatty_payload(fake_payload: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    package = fake_payload(PAYLOAD)
    monkeypatch.setenv("ORCHESTRATE_PAYLOAD_DIR", str(package))
    return package


def _rented_box(tmp_path: Path, server: Any) -> dict[str, str]:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": [{
        "name": "box0", "host": server.host, "port": server.port, "user": server.user,
        "key_path": str(server.client_key_path), "host_key": server.host_key, "gpu": {"model": "T4", "count": 1},
        "price": {"per_hour": 3.6}, "prepare": "image", "python": sys.executable,
        "workdir": str(tmp_path / "box0-home" / "orchestrate")}]}))
    return {"ORCHESTRATE_INVENTORY": str(inventory)}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "rented"])
def test_a_payload_writing_100_mb_and_bad_bytes_is_tailed_and_stored_capped(
    where: str, home: Path, tmp_path: Path, chatty_payload: Path, sshd: Callable[..., Any]
) -> None:
    env = _rented_box(tmp_path, sshd()) if where == "rented" else {}
    args = ["--provider", "rented", "--host", "box0"] if where == "rented" else ["--provider", "local"]
    # Not --quiet: the live echo is part of what must not block or crash.
    orchestrate = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", *args], env=cli_env(home, **env),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    memory = _PeakRss(orchestrate.pid)
    try:
        stdout_bytes, stderr_bytes = orchestrate.communicate(timeout=240)
    finally:
        if orchestrate.poll() is None:
            orchestrate.kill()
            orchestrate.wait()
    memory.thread.join(timeout=30)
    stdout, stderr = stdout_bytes.decode(), stderr_bytes.decode()
    assert orchestrate.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stdout + stderr
    # The echo kept up by skipping, said so, and showed the end of the log with its bad bytes replaced.
    assert "bytes of the payload's log not shown here" in stdout
    assert len(stdout_bytes) < 8 * MAX_LOG_CHUNK
    assert "undecodable: \ufffd\ufffd\ufffd surrogate: \ufffd\ufffd\ufffd cut: \ufffd nul:" in stdout
    assert LAST_LINE.decode() in stdout
    assert 0 < memory.peak < PEAK_RSS_LIMIT, f"peak RSS {memory.peak >> 20} MiB"

    [run] = api.list_runs(home=home)
    assert run.state == "succeeded"
    with Store(home) as store:
        [kept] = store.logs(run.id)
    assert len(kept.text) <= MAX_KEPT_LOG and kept.truncated >= TOTAL - MAX_KEPT_LOG
    assert kept.text.endswith(REPLACED_LINE + "\n" + LAST_LINE.decode())
    assert (home / "state.db").stat().st_size < 4 * MAX_KEPT_LOG

    logs = run_cli(home, "logs", run.id, timeout=120)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert lines[-2:] == [REPLACED_LINE, LAST_LINE.decode()]
    assert lines[-3].endswith("the payload says something fairly long about its training progress, step by step")
    assert f"the log's first {kept.truncated} bytes were not kept" in logs.stderr
    assert f"the last {MAX_KEPT_LOG // 1024} KiB" in logs.stderr
    # Every byte is either kept or counted as left out (the text before the bad bytes is as the payload wrote it).
    shown = len(kept.text[:-len(REPLACED_LINE + "\n") - len(LAST_LINE)].encode()) + len(BAD_LINE) + len(LAST_LINE)
    assert kept.truncated + shown == TOTAL
    print(f"\n{where}: peak RSS {memory.peak / 2**20:.0f} MiB, stored log {len(kept.text.encode())} bytes "
          f"({kept.truncated} left out), store {(home / 'state.db').stat().st_size} bytes")


# The tail itself, on a run directory written by the test: no payload, no real time.


def _exited_payload(run_dir: Path, log: bytes) -> DetachedProcess:
    """A run directory as a payload that wrote ``log`` and exited 0 leaves it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOG_FILE).write_bytes(log)
    (run_dir / PID_FILE).write_text("999999\n")
    (run_dir / EXIT_FILE).write_text("0\n")
    return DetachedProcess(LocalTransport(), str(run_dir))


def test_the_tail_skips_ahead_when_the_log_outruns_it_and_says_how_much(tmp_path: Path) -> None:
    log = b"".join(b"%09d\n" % i for i in range(1_000_000))  # 10 MB, far more than the echo may lag
    process = _exited_payload(tmp_path / "run", log)
    shown: list[str] = []
    assert follow(process, timeout_s=60, on_output=shown.append, sleep=lambda _: None) == 0
    text = "".join(shown)
    notes = [piece for piece in shown if piece.startswith("[orchestrate:")]
    skipped = len(log) - 2 * MAX_LOG_CHUNK
    assert notes == [f"[orchestrate: {skipped} bytes of the payload's log not shown here: it is written faster than "
                     f"it can be shown; `orchestrate logs` shows the last {MAX_KEPT_LOG // 1024} KiB after the run]\n"]
    assert text.startswith("000000000\n") and text.endswith("000999999\n")  # its start, then its end
    assert len(text) - len(notes[0]) == 2 * MAX_LOG_CHUNK


def test_the_tail_shows_every_byte_of_a_log_that_keeps_up(tmp_path: Path) -> None:
    log = b"".join(b"%09d\n" % i for i in range(300_000))  # 3 MB: within the lag allowed
    process = _exited_payload(tmp_path / "run", log)
    shown: list[str] = []
    follow(process, timeout_s=60, on_output=shown.append, sleep=lambda _: None)
    assert "".join(shown) == log.decode()


def test_a_character_split_between_two_reads_is_not_replaced(tmp_path: Path) -> None:
    """Each read used to be decoded alone: an "é" cut by the 1 MiB read size became two U+FFFD."""
    log = b"a" * (MAX_LOG_CHUNK - 1) + "é\n".encode() + BAD_LINE
    process = _exited_payload(tmp_path / "run", log)
    shown: list[str] = []
    follow(process, timeout_s=60, on_output=shown.append, sleep=lambda _: None)
    assert "".join(shown) == log.decode(errors="replace")
    assert "".join(shown).count("\ufffd") == 7  # the bad bytes only


def test_a_line_that_never_ends_is_given_out_in_pieces_without_splitting_a_character() -> None:
    lines = LineBuffer(max_line=10)
    # 11 bytes and no end: one must go, but it is the first byte of "é", so both of its bytes go together.
    assert lines.feed("é".encode() + b"012345678") == "é\n" and lines.pending == 9
    assert lines.feed(b"9\n") == "0123456789\n" and lines.pending == 0
    assert lines.feed(b"x" * 25) == "x" * 15 + "\n" and lines.pending == 10
    assert lines.flush() == "x" * 10 + "\n"
