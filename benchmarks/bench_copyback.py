"""`make bench`: the memory a spot run's backup copy takes, for a 100 MB backup over a loopback sshd.

A real sshd on 127.0.0.1 plays the spot machine; its run directory holds ``checkpoints/`` with ``--size-mb`` of
incompressible weights (what Keras backups are). A child process (so that nothing else this script did counts)
connects with the SSH transport, then runs :meth:`CheckpointKeeper.copy_back` (the machine's ``tar`` copied back,
cleaned, gzip-archived) and :meth:`CheckpointKeeper.restore` (the archive uploaded to a second run directory and
unpacked). Measured: the child's peak RSS (``ru_maxrss``) before, after the copy and after the restore, in MiB.

``--before-tree DIR`` measures the same in another checkout too (e.g. the commit before issue 23, exported with
``git archive``), for a before/after row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from benchlib import REPO, Section, bench_parser, measured_on, prepare_sshd
from tests.integration.conftest import start_server, write_key_pair

SECTION = Section("copyback")

# Runs in the child, with the tree under test first on sys.path; prints one JSON line.
CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    tree, port, user, key, host_key, first, second, home = sys.argv[1:9]
    sys.path.insert(0, tree)
    from orchestrator.eviction import CheckpointKeeper
    from orchestrator.machine import Access, Environment, Machine, Placement
    from orchestrator.remote.session import Session
    from orchestrator.remote.ssh import SSHTarget, SSHTransport
    import orchestrator.eviction
    assert orchestrator.eviction.__file__.startswith(tree), orchestrator.eviction.__file__

    def session(transport, run_dir):
        machine = Machine(run_id="r-bench", id="spot-1", provider="aws",
                          placement=Placement(provider="aws", instance_type="g4dn.xlarge"), access=Access(via="local"),
                          environment=Environment(prepare="image", python=sys.executable, workdir=run_dir),
                          run_dir=run_dir, launched_at=datetime.now(UTC))
        return Session(machine, transport, run_dir=run_dir, python=sys.executable)

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    transport = SSHTransport(SSHTarget("127.0.0.1", int(port), user, Path(key), host_key=host_key),
                             known_hosts=Path(home) / "known_hosts")
    transport.run("true")
    keeper = CheckpointKeeper(Path(home) / "checkpoints" / "r-bench")
    before = peak_mib()
    started = time.monotonic()
    keeper.copy_back(session(transport, first), 3)
    copied = time.monotonic()
    after_copy = peak_mib()
    keeper.restore(session(transport, second))
    restored = time.monotonic()
    transport.close()
    assert keeper.copies == 1
    print(json.dumps({"before": before, "after_copy": after_copy, "after_restore": peak_mib(),
                      "copy_s": copied - started, "restore_s": restored - copied,
                      "archive_mib": keeper.archive.stat().st_size / 2**20}))
""")


def measure(tree: Path, root: Path, size_mb: int) -> dict[str, float]:
    """One copy back and restore of a ``size_mb`` backup, in a child process importing ``tree``."""
    key, host_key = root / "client_key", root / "host_key"
    write_key_pair(key)
    write_key_pair(host_key)
    server = start_server(root / "sshd", key, host_key)
    try:
        first, second = root / "box-1" / "run", root / "box-2" / "run"
        backup = first / "checkpoints" / "accuracy-1"
        backup.mkdir(parents=True)
        second.mkdir(parents=True)
        (backup / "training_metadata.json").write_text('{"epoch": 3}')
        with (backup / "model.weights.h5").open("wb") as weights:
            for _ in range(size_mb):
                weights.write(os.urandom(1 << 20))
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(tree), str(server.port), server.user, str(key), server.host_key,
             str(first), str(second), str(root / "home")],
            check=True, capture_output=True, text=True, cwd=root,
        ).stdout
        restored = second / "checkpoints" / "accuracy-1" / "model.weights.h5"
        assert restored.stat().st_size == size_mb << 20, "the restore did not bring the whole backup back"
    finally:
        server.stop()
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--before-tree", type=Path, help="another checkout to measure the same in")
    args = parser.parse_args()
    prepare_sshd()
    trees = [("before (issue 23)", args.before_tree)] if args.before_tree else []
    rows = []
    for label, tree in [*trees, ("now", REPO)]:
        with tempfile.TemporaryDirectory() as tmp:
            r = measure(tree.resolve(), Path(tmp), args.size_mb)
        rows.append(f"| {label} | {r['before']:.0f} | {r['after_copy']:.0f} (+{r['after_copy'] - r['before']:.0f}) | "
                    f"{r['after_restore']:.0f} (+{r['after_restore'] - r['before']:.0f}) | {r['copy_s']:.1f} | "
                    f"{r['restore_s']:.1f} | {r['archive_mib']:.0f} |")
    command = "`python benchmarks/bench_copyback.py --output docs/performance.md" + (
        " --before-tree DIR`, DIR holding `git archive` of the commit before issue 23" if args.before_tree else "`")
    section = SECTION.text([
        "## Memory of a spot backup's copy (issue 23)",
        "",
        f"{measured_on()}: {args.size_mb} MB of incompressible weights in a "
        "loopback sshd box's `checkpoints/`, copied back (`CheckpointKeeper.copy_back`) and restored to a second "
        "run directory (`restore`) in a child process. Peak RSS (`ru_maxrss`) in MiB; seconds.",
        "",
        f"Command: {command}.",
        "",
        "| code | peak RSS before | after the copy back | after the restore | copy s | restore s | archive MiB |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Before, the machine's tar arrived whole in memory (`run` gathers stdout), was re-packed into a second "
        "in-memory archive, and the restore read the archive whole to upload it. Now the tar streams into a file "
        "(`Transport.read_to_file`, 64 KiB reads from the SSH channel), is cleaned file to file (tarfile's stream "
        "modes), and the restore uploads from the file (`Transport.put_file`).",
    ])
    SECTION.publish(args.output, section)


if __name__ == "__main__":
    main()
