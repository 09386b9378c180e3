"""Every remote command quoted: a run's whole remote life (run directory, prepare, push, start, follow, collect,
clean-up) and ``orchestrate ssh`` driven with hostile work directories and a hostile interpreter path, over the
local box's ``/bin/sh`` and over a real loopback sshd. Each hostile name tries to run ``touch SENTINEL``; none of the
sentinels may appear, and each operation must have worked on the path as named.

Where validation refuses such a name (a run file's ``machine.environment``, cloud-init's payload directory), the
refusal is tested instead. The inventory's ``workdir`` is not validated: a name with spaces and a newline reaches
the remote layer, and must still execute nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.errors import EnvironmentNotReady, SpecError
from orchestrator.machine import Access, Environment, Machine, Placement
from orchestrator.providers.cloudinit import payload_directory
from orchestrator.remote.detached import follow
from orchestrator.remote.payload import build_bundle, suite_document
from orchestrator.remote.prepare import prepare_machine
from orchestrator.remote.session import Session, clean_up
from orchestrator.remote.shell import ssh_argv
from orchestrator.remote.ssh import SSHTarget, SSHTransport
from orchestrator.remote.transport import LocalTransport, Transport
from orchestrator.spec import EnvironmentSpec
from tests.conftest import FAKE_MAIN_HEADER
from tests.integration.conftest import SSHServer
from tests.integration.conftest import client_key as client_key  # the fixture
from tests.integration.conftest import make_host_key as make_host_key  # the fixture
from tests.integration.conftest import sshd as sshd  # the fixture
from tests.integration.conftest import sshd_binary as sshd_binary  # the fixture

RUN_ID = "r-20261130-120000-q0te"
# The payload says where it ran and what it was given, then writes its results.
PAYLOAD = FAKE_MAIN_HEADER + '''
print("CWD " + os.getcwd())
print("ARGV " + json.dumps(sys.argv[1:]))
write([sample("train_throughput", "images_per_sec", 50.0)])
'''


def _hostile(sentinels: Path, *, whitespace: bool) -> str:
    """A relative path that runs ``touch`` on a sentinel in every way a shell would if it were not quoted.

    Without whitespace it is what a run file's ``machine.environment.workdir`` accepts; with it, spaces, a tab and a
    newline too (what an inventory's ``workdir`` accepts). Quoted, its slashes only make directories.
    """
    touch = f"touch${{IFS}}{sentinels}/"
    name = (f"it's\"q\";{touch}semicolon;$({touch}dollar)`{touch}backtick`|{touch}pipe&&{touch}and"
            f"&{touch}background>{sentinels}/redirect<x*?[a]{{a,b}}~!#")
    if whitespace:
        name += f" ; touch {sentinels}/spaced\n touch {sentinels}/newline\t$(touch {sentinels}/tab)"
    return name


def _sentinels_made(sentinels: Path) -> list[str]:
    return sorted(p.name for p in sentinels.iterdir())


@pytest.fixture
def sentinels(tmp_path: Path) -> Path:
    path = tmp_path / "sentinels"
    path.mkdir()
    return path


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Transport]:
    """The local box's /bin/sh, or a pinned SSH connection to a loopback sshd (same user, same files)."""
    if request.param == "local":
        yield LocalTransport()
        return
    server: SSHServer = request.getfixturevalue("sshd")()
    ssh = SSHTransport(SSHTarget(host=server.host, port=server.port, user=server.user,
                                 key_path=server.client_key_path, host_key=server.host_key),
                       known_hosts=tmp_path / "known_hosts")
    try:
        yield ssh
    finally:
        ssh.close()


@pytest.fixture
def bundle_of(fake_payload: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points the bundle at the stand-in payload; returns its directory."""
    package = fake_payload(PAYLOAD)
    monkeypatch.setenv("ORCHESTRATE_PAYLOAD_DIR", str(package))
    return package


def _python_at(directory: Path) -> str:
    """This venv's Python behind a hostile path (a wrapper script: a symlink would lose the venv)."""
    directory.mkdir(parents=True, exist_ok=True)
    python = directory / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return str(python)


def _machine(workdir: str, python: str, access: Access) -> Machine:
    return Machine(
        run_id=RUN_ID, id="hostile-box", provider="rented", placement=Placement(provider="rented", instance_type="b"),
        access=access, environment=Environment(prepare="image", python=python, workdir=workdir),
        run_dir=f"{workdir}/runs/{RUN_ID}", launched_at=datetime.now(UTC),
    )


def _whole_remote_life(transport: Transport, machine: Machine) -> tuple[Session, str]:
    """What a run does on one machine, start to end; returns the session and the payload's log."""
    session = Session(machine, transport)
    session.open_run_dir()
    session.prepare("tensorflow")
    suite = json.dumps(suite_document("smoke", RUN_ID, {"epochs": 1})).encode()
    session.push(build_bundle(), suite, lambda sent, total: None)
    session.start({"HOSTILE": machine.environment.workdir})
    log: list[str] = []
    assert session.process is not None
    assert follow(session.process, timeout_s=120, on_output=log.append, poll_interval_s=0.05) == 0
    session.collect(RUN_ID)
    clean_up(transport, session.run_dir)
    return session, "".join(log)


def test_a_whole_remote_run_under_a_hostile_workdir_and_python_path_executes_nothing(
    transport: Transport, tmp_path: Path, sentinels: Path, bundle_of: Path
) -> None:
    hostile = _hostile(sentinels, whitespace=False)
    workdir, python = tmp_path / hostile, _python_at(tmp_path / ("py " + hostile))
    session, log = _whole_remote_life(transport, _machine(str(workdir), python, Access(via="local")))
    assert _sentinels_made(sentinels) == []
    assert session.run_dir == str(workdir / "runs" / RUN_ID)
    assert f"CWD {session.run_dir}\n" in log  # the payload ran in the run directory as named
    assert session.results is not None and session.results["run_id"] == RUN_ID
    assert not (workdir / "runs" / RUN_ID).exists()  # cleaned up: that very directory, nothing else
    assert session.payload_dir == str(workdir / "payload" / session.payload_dir.rsplit("/", 1)[-1])
    assert (Path(session.payload_dir) / ".complete").is_file()
    top = hostile.split("/")[0]  # nothing was made beside the hostile directories (nor the sentinels)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "fake_payload" and not p.name.startswith(
        ("sshd-", "host_key_", "known_hosts"))) == sorted(["sentinels", top, "py " + top])


def test_an_inventory_workdir_with_spaces_and_a_newline_executes_nothing(
    transport: Transport, tmp_path: Path, sentinels: Path, bundle_of: Path
) -> None:
    workdir = tmp_path / _hostile(sentinels, whitespace=True)
    machine = _machine(str(workdir), sys.executable, Access(via="local"))
    session = Session(machine, transport)
    session.open_run_dir()
    assert session.run_dir == str(workdir / "runs" / RUN_ID) and (workdir / "runs" / RUN_ID).is_dir()
    session.python = sys.executable
    session.payload_dir = str(bundle_of.parent)  # the payload as pushed (push itself: tested below)
    transport.put_bytes(json.dumps(suite_document("smoke", RUN_ID, {})).encode(), f"{session.run_dir}/suite.json")
    session.start({"HOSTILE": str(workdir)})
    log: list[str] = []
    assert session.process is not None
    assert follow(session.process, timeout_s=120, on_output=log.append, poll_interval_s=0.05) == 0
    session.collect(RUN_ID)
    assert f"CWD {session.run_dir}\n" in "".join(log)
    clean_up(transport, session.run_dir)
    assert not (workdir / "runs" / RUN_ID).exists() and workdir.is_dir()
    assert _sentinels_made(sentinels) == []


def test_the_payload_cache_of_a_workdir_with_spaces_is_inside_that_workdir(
    tmp_path: Path, sentinels: Path, bundle_of: Path
) -> None:
    workdir = tmp_path / "work dir"
    session = Session(_machine(str(workdir), sys.executable, Access(via="local")), LocalTransport())
    session.open_run_dir()
    session.push(build_bundle(), b"{}", lambda sent, total: None)
    assert Path(session.payload_dir).parent == workdir / "payload"


def test_prepare_venv_under_a_hostile_workdir_makes_the_venv_there_and_executes_nothing(
    tmp_path: Path, sentinels: Path
) -> None:
    workdir = tmp_path / _hostile(sentinels, whitespace=False)
    with pytest.raises(EnvironmentNotReady, match="lacks: keras"):  # requirements: [] installs nothing
        prepare_machine(LocalTransport(), machine_id="hostile-box", address="this machine", mode="venv",
                        python=_python_at(tmp_path / "py"), backend_module="tensorflow", workdir_base=str(workdir),
                        requirements="")
    [venv] = (workdir / "venvs").iterdir()
    assert (venv / ".ready").is_file() and (venv / "bin" / "python").exists()
    assert _sentinels_made(sentinels) == []


def test_orchestrate_ssh_opens_in_a_hostile_run_directory_and_executes_nothing(
    sshd: Callable[..., SSHServer], tmp_path: Path, sentinels: Path
) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client (ssh) is missing: install openssh-client to run this")
    server = sshd()
    workdir = tmp_path / _hostile(sentinels, whitespace=True)
    run_dir = workdir / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    access = Access(via="ssh", host=server.host, port=server.port, user=server.user,
                    key_path=str(server.client_key_path), host_key=server.host_key)
    for reach in (access, Access(via="local")):
        machine = _machine(str(workdir), sys.executable, reach)
        argv = ssh_argv(machine, ["pwd"], tmp_path / "ssh_known_hosts")
        shown = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert (shown.returncode, shown.stdout) == (0, f"{run_dir}\n"), (reach.via, shown.stderr)
    assert _sentinels_made(sentinels) == []


def test_a_run_file_refuses_a_workdir_or_python_with_a_newline_or_control_character() -> None:
    for field in ("workdir", "python"):
        for bad in ("runs\n touch /tmp/x", "a\tb", "a\x1b[2Jb", ""):
            with pytest.raises(ValidationError, match="without control characters"):
                EnvironmentSpec(**{field: bad})  # type: ignore[arg-type]
    assert EnvironmentSpec(workdir="it's \"q\";$(x)`y`").workdir == "it's \"q\";$(x)`y`"  # quoted, not refused


@pytest.mark.parametrize("workdir", ["a;touch x", "$(touch x)", "`touch x`", "a b", "a\nb", "../etc", "a/../../b"])
def test_cloud_init_refuses_a_payload_directory_that_is_not_a_plain_path(workdir: str) -> None:
    with pytest.raises(SpecError, match="workdir"):
        payload_directory("ubuntu", workdir)
