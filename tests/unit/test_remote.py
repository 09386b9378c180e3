"""The detached-run protocol against real local processes (LocalTransport runs /bin/sh)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrator.errors import PayloadFailed
from orchestrator.remote.detached import DetachedProcess, follow
from orchestrator.remote.transport import LocalTransport
from tests.conftest import group_alive


def _started(run_dir: Path, script: str) -> tuple[DetachedProcess, int]:
    run_dir.mkdir(parents=True, exist_ok=True)
    process = DetachedProcess(LocalTransport(), str(run_dir))
    pgid = process.start([sys.executable, "-c", script], {"GREETING": "hello world"})
    return process, pgid


def test_a_detached_payload_is_followed_to_its_exit_code_with_its_whole_log(tmp_path: Path) -> None:
    script = (
        "import os, time\nfor i in range(3):\n    print(os.environ['GREETING'], i, flush=True); time.sleep(0.1)\n"
        "raise SystemExit(3)"
    )
    process, _ = _started(tmp_path / "run", script)
    chunks: list[str] = []
    code = follow(process, timeout_s=60, on_output=chunks.append, poll_interval_s=0.05)
    assert code == 3
    assert "".join(chunks).splitlines() == ["hello world 0", "hello world 1", "hello world 2"]


def test_the_payload_runs_in_its_own_process_group_and_kill_stops_all_of_it(tmp_path: Path) -> None:
    # The payload starts a child; killing the group must take both.
    script = "import subprocess, time\nsubprocess.Popen(['sleep', '300'])\nprint('up', flush=True)\ntime.sleep(300)"
    process, pgid = _started(tmp_path / "run", script)
    assert pgid != __import__("os").getpgid(0)
    assert group_alive(pgid)
    process.kill(grace_s=2)
    assert not group_alive(pgid)


def test_a_payload_past_its_timeout_is_killed(tmp_path: Path) -> None:
    process, pgid = _started(tmp_path / "run", "import time\ntime.sleep(300)")
    ticks = iter([0.0, 0.0, 100.0, 200.0])  # the injected clock jumps past the deadline
    with pytest.raises(PayloadFailed, match="run timeout of 50 s"):
        follow(process, timeout_s=50, on_output=lambda _: None, clock=lambda: next(ticks), sleep=lambda _: None)
    assert not group_alive(pgid)


def test_hostile_strings_in_paths_arguments_and_environment_execute_nothing(tmp_path: Path) -> None:
    hostile = "x; touch pwned; $(touch pwned2) `touch pwned3`"
    run_dir = tmp_path / f"run {hostile}"
    run_dir.mkdir()
    process = DetachedProcess(LocalTransport(), str(run_dir))
    echo = "import sys, os; print(sys.argv[1], os.environ['X'])"
    process.start([sys.executable, "-c", echo, hostile], {"X": hostile})
    assert follow(process, timeout_s=60, on_output=lambda _: None, poll_interval_s=0.05) == 0
    assert process.log_tail().strip() == f"{hostile} {hostile}"
    assert not list(tmp_path.rglob("pwned*")) and not list(Path.cwd().glob("pwned*"))
    # The hostile directory name was used whole: the payload's files are in it, and no other path was made.
    assert [path.name for path in tmp_path.iterdir()] == [run_dir.name]
    assert {"pid", "payload.log", "exit_code"} <= {path.name for path in run_dir.iterdir()}


def test_a_payload_killed_from_outside_is_reported_with_its_exit_code(tmp_path: Path) -> None:
    script = "import os, signal\nprint('about to die', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)"
    process, _ = _started(tmp_path / "run", script)
    code = follow(process, timeout_s=60, on_output=lambda _: None, poll_interval_s=0.05)
    assert code == 137
    assert "about to die" in process.log_tail()


def test_starting_twice_launches_the_payload_once(tmp_path: Path) -> None:
    # A transport re-runs the start command after a dropped connection; the payload must not run twice.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    process = DetachedProcess(LocalTransport(), str(run_dir))
    script = "import time\nprint('started', flush=True)\ntime.sleep(1)"
    first = process.start([sys.executable, "-c", script], {})
    second = process.start([sys.executable, "-c", script], {})
    assert first == second
    follow(process, timeout_s=60, on_output=lambda _: None, poll_interval_s=0.05)
    assert process.log_tail().count("started") == 1


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_the_bundle_extractor_refuses_members_that_reach_outside(tmp_path: Path, kind: str) -> None:
    import io
    import subprocess
    import tarfile

    from orchestrator.remote.payload import SAFE_EXTRACT

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        good = tarfile.TarInfo("keras_bench/__init__.py")
        tar.addfile(good, io.BytesIO(b""))
        if kind == "symlink":
            link = tarfile.TarInfo("keras_bench/link")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc"
            tar.addfile(link)
        else:
            name = "../escaped.txt" if kind == "dotdot" else str(tmp_path / "escaped.txt")
            evil = tarfile.TarInfo(name)
            evil.size = 3
            tar.addfile(evil, io.BytesIO(b"bad"))
    dest = tmp_path / "dest"
    dest.mkdir()
    result = subprocess.run([sys.executable, "-c", SAFE_EXTRACT, str(archive), str(dest)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "unsafe member" in result.stderr
    assert not (tmp_path / "escaped.txt").exists()
    assert list(dest.iterdir()) == []  # nothing extracted at all, not even the good member


@pytest.mark.parametrize("python_has_filters", [True, False], ids=["data-filter", "fallback"])
def test_the_bundle_extractor_writes_a_good_bundle_with_or_without_tarfile_filters(
    tmp_path: Path, python_has_filters: bool
) -> None:
    import io
    import subprocess
    import tarfile

    from orchestrator.remote.payload import SAFE_EXTRACT

    archive = tmp_path / "good.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        folder = tarfile.TarInfo("keras_bench/suites")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        member = tarfile.TarInfo("keras_bench/suites/smoke.yaml")
        member.size = 5
        tar.addfile(member, io.BytesIO(b"name:"))
    dest = tmp_path / "dest"
    dest.mkdir()
    # Without filters: an old Python on the machine (tarfile.data_filter absent) takes the plain loop.
    code = SAFE_EXTRACT if python_has_filters else "import tarfile\ndel tarfile.data_filter\n" + SAFE_EXTRACT
    result = subprocess.run([sys.executable, "-c", code, str(archive), str(dest)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert (dest / "keras_bench" / "suites" / "smoke.yaml").read_bytes() == b"name:"


def test_the_log_and_the_results_come_back_in_one_round_trip(tmp_path: Path) -> None:
    from orchestrator.remote.detached import DetachedProcess
    from orchestrator.remote.transport import LocalTransport

    process = DetachedProcess(LocalTransport(), str(tmp_path))
    assert process.log_and_file("results.json").kept_log() == ("", 0)  # nothing started: no log, no file
    log = "".join(f"line {i}\n" for i in range(50)) + "no newline at the end"
    (tmp_path / "payload.log").write_text(log)
    collected = process.log_and_file("results.json")
    assert collected.kept_log() == (log, 0) and collected.file is None
    assert collected.log_tail(3).splitlines() == ["line 48", "line 49", "no newline at the end"]
    (tmp_path / "results.json").write_bytes(b'{"a": 1}\n--orchestrate-x--\nabsent\n')
    assert process.log_and_file("results.json").file == b'{"a": 1}\n--orchestrate-x--\nabsent\n'


def test_a_long_log_is_kept_from_its_first_whole_line_within_the_cap(tmp_path: Path) -> None:
    from orchestrator.remote.detached import DetachedProcess
    from orchestrator.remote.transport import LocalTransport

    lines = [f"line {i:03}\n" for i in range(100)]  # 9 bytes each
    (tmp_path / "payload.log").write_text("".join(lines))
    text, skipped = DetachedProcess(LocalTransport(), str(tmp_path)).log_and_file("r", max_log_bytes=40).kept_log()
    # The last 40 bytes start mid-line: the partial line goes too, and the count says what was left out.
    assert text == "".join(lines[-4:]) and skipped == 900 - 36


def test_prepare_venv_with_empty_requirements_says_what_to_list_not_to_use_venv(tmp_path: Path) -> None:
    from orchestrator.errors import EnvironmentNotReady
    from orchestrator.remote.prepare import prepare_machine
    from orchestrator.remote.transport import CommandResult

    class MadeVenvWithoutKeras:
        """A machine where creating the venv works and the probe finds neither Keras nor the backend."""

        def run(self, command: str, *, timeout: float = 60.0) -> CommandResult:
            if "-m venv" in command:
                return CommandResult(0, b"created\n/box/venvs/abc\n", b"")
            return CommandResult(1, b"keras tensorflow\nno GPU\n", b"")

        def put_bytes(self, data: bytes, remote_path: str, *, progress: object = None) -> None:
            raise AssertionError("prepare uploads nothing")

        def close(self) -> None:
            pass

    with pytest.raises(EnvironmentNotReady, match="lacks: keras tensorflow") as raised:
        prepare_machine(MadeVenvWithoutKeras(), machine_id="box0", address="u@box:22", mode="venv", python="python3",
                        backend_module="tensorflow", workdir_base=str(tmp_path), requirements="")
    hint = raised.value.hint or ""
    assert "requirements: []" in hint and "keras" in hint and "or use prepare: venv" not in hint


def test_clean_up_stops_the_payload_and_removes_the_run_directory_in_one_step(tmp_path: Path) -> None:
    from orchestrator.errors import RemoteError
    from orchestrator.remote.detached import DetachedProcess
    from orchestrator.remote.session import clean_up
    from orchestrator.remote.transport import LocalTransport
    from tests.conftest import group_alive

    run_dir = tmp_path / "runs" / "r-1"
    run_dir.mkdir(parents=True)
    pgid = DetachedProcess(LocalTransport(), str(run_dir)).start(["sleep", "300"], {})
    clean_up(LocalTransport(), str(run_dir))
    assert not group_alive(pgid) and not run_dir.exists()
    clean_up(LocalTransport(), str(run_dir))  # again: nothing there, not an error
    # What follows the kill in the same round trip must succeed, or the clean-up says so.
    with pytest.raises(RemoteError, match="exit 3"):
        DetachedProcess(LocalTransport(), str(tmp_path)).kill(then="exit 3")
