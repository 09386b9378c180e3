"""Runs on one box share its payload cache (``<workdir>/payload/<hash>``): a run placing the payload must never
leave another run's payload reading a half-written file. CI once saw 'no results document' from one of ten local
runs started together: a second extraction in place truncated the ``__main__`` a first run was importing."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.machine import Access, Environment, Machine, Placement
from orchestrator.remote.payload import PLACE_PAYLOAD, build_bundle
from orchestrator.remote.session import Session
from orchestrator.remote.transport import LocalTransport


def _place(filled: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PLACE_PAYLOAD, str(filled), str(cache)], capture_output=True,
                          text=True, timeout=60)


def _filled(tmp_path: Path, name: str, text: str) -> Path:
    filled = tmp_path / name
    (filled / "keras_bench").mkdir(parents=True)
    (filled / "keras_bench" / "__main__.py").write_text(text)
    return filled


def test_a_payload_is_placed_whole_into_an_absent_or_empty_cache(tmp_path: Path) -> None:
    for cache in (tmp_path / "absent", tmp_path / "empty"):
        if cache.name == "empty":
            cache.mkdir()
        filled = _filled(tmp_path, f"filled-{cache.name}", "print('new')")
        assert _place(filled, cache).returncode == 0
        assert (cache / ".complete").is_file() and (cache / "keras_bench" / "__main__.py").read_text() == "print('new')"
        assert not filled.exists()


def test_a_cache_another_run_completed_is_kept_as_it_is(tmp_path: Path) -> None:
    cache = _filled(tmp_path, "cache", "print('first')")
    (cache / ".complete").touch()
    before = (cache / "keras_bench" / "__main__.py").stat().st_ino
    filled = _filled(tmp_path, "filled", "print('second')")
    assert _place(filled, cache).returncode == 0
    main = cache / "keras_bench" / "__main__.py"
    assert main.read_text() == "print('first')" and main.stat().st_ino == before  # not rewritten, not replaced
    assert not filled.exists()


def test_a_cache_left_incomplete_is_replaced(tmp_path: Path) -> None:
    cache = _filled(tmp_path, "cache", "print('cut")  # an older in-place extraction that never finished
    filled = _filled(tmp_path, "filled", "print('whole')")
    assert _place(filled, cache).returncode == 0
    assert (cache / ".complete").is_file() and (cache / "keras_bench" / "__main__.py").read_text() == "print('whole')"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # nothing set aside is left behind


@pytest.mark.parametrize("box", range(3))
def test_runs_pushing_to_one_box_at_once_never_show_a_payload_file_cut_short(tmp_path: Path, box: int) -> None:
    bundle = build_bundle()
    workdir = tmp_path / f"box{box}"
    seen: list[str] = []
    stop = threading.Event()
    main_size: dict[str, int] = {}

    def watch() -> None:
        """Reads every placed payload's __main__ while runs push, as a run that found the cache would import it."""
        while not stop.is_set():
            for complete in (workdir / "payload").glob("*/.complete"):
                if complete.parent.name.startswith("."):
                    continue  # a directory being filled, not the cache
                main = complete.parent / "keras_bench" / "__main__.py"
                size = len(main.read_bytes()) if main.exists() else -1
                expected = main_size.setdefault(str(main), size)
                if size != expected:
                    seen.append(f"{main}: {size} bytes, had {expected}")

    def push(index: int) -> None:
        machine = Machine(run_id=f"r-{index}", id=f"box-{index}", provider="local",
                          placement=Placement(provider="local", instance_type="local"), access=Access(via="local"),
                          environment=Environment(prepare="image", python=sys.executable, workdir=str(workdir)),
                          run_dir=f"{workdir}/runs/r-{index}", launched_at=datetime.now(UTC))
        session = Session(machine, LocalTransport())
        session.open_run_dir()
        session.push(bundle, b"{}", lambda sent, total: None)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    pushers = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for thread in pushers:
        thread.start()
    for thread in pushers:
        thread.join(timeout=120)
    stop.set()
    watcher.join(timeout=10)
    assert seen == []
    [cache] = [p for p in (workdir / "payload").iterdir()]  # one cache, no partial or stale directory left
    assert (cache / ".complete").is_file() and (cache / "keras_bench" / "__main__.py").stat().st_size > 0
