"""One machine of a run, as the run sees it over its transport: run directory, prepare, push, start, collect, clean up.

:func:`clean_up` — stop the payload's process group, remove the run directory — is the one remote clean-up step,
used by the run's teardown and by ``orchestrate down`` alike. Providers never do it: they only make machines exist
and go away.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import PayloadFailed, RemoteError
from orchestrator.machine import Machine
from orchestrator.remote.detached import DetachedProcess
from orchestrator.remote.payload import PLACE_PAYLOAD, SAFE_EXTRACT, SUITE_FILE, Bundle
from orchestrator.remote.prepare import prepare_machine
from orchestrator.remote.transport import Transport, check
from orchestrator.results import parse_results

# The folder a payload is unpacked into before it is renamed into place: mktemp fills the six X's at random.
PARTIAL_PAYLOAD = ".partial-" + "X" * 6

RESULTS_FILE = "results.json"
BUNDLE_FILE = "bundle.tar.gz"
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@dataclass
class Session:
    """A machine of the run and what the run has done on it so far."""

    machine: Machine
    transport: Transport | None = None
    run_dir: str = ""  # absolute path of the run directory, once made
    python: str = "python3"  # the payload's interpreter, once prepared
    payload_dir: str = ""  # absolute path holding keras_bench, once pushed
    process: DetachedProcess | None = None
    collected: bool = False
    results: dict[str, Any] | None = None
    log_tail: str | None = None
    log: str | None = None  # the payload's log as collected (its last MAX_KEPT_LOG bytes)
    log_skipped: int = 0  # bytes of the log's start the collected log leaves out

    @property
    def name(self) -> str:
        """The machine's id, for messages."""
        return self.machine.id

    def reach(self) -> Transport:
        """The open transport.

        Raises:
            RemoteError: the machine was never connected.
        """
        if self.transport is None:
            raise RemoteError(f"no connection to {self.machine.id}")
        return self.transport

    def open_run_dir(self) -> str:
        """Makes the run directory (0700) and returns ``user@host:port dir`` for the event."""
        directory = shlex.quote(self.machine.run_dir)
        out = check(self.reach(), f"mkdir -p {directory} && chmod 700 {directory} && cd {directory} && pwd",
                    what=f"creating the run directory on {self.machine.id}")
        self.run_dir = out.decode().strip()
        return f"{self.machine.access.describe()} {self.run_dir}"

    def prepare(self, backend: str) -> str:
        """Readies the payload's interpreter (image, venv or none) and returns the event's detail."""
        env = self.machine.environment
        self.python, detail = prepare_machine(
            self.reach(), machine_id=self.machine.id, address=self.machine.access.describe(), mode=env.prepare,
            python=env.python, backend_module=BACKEND_MODULES[backend], workdir_base=env.workdir,
            requirements="\n".join(env.requirements) if env.requirements is not None else None,
        )
        return detail

    def push(self, bundle: Bundle, suite_bytes: bytes, progress: Callable[[int, int], None]) -> str:
        """Uploads the suite document, and the payload unless the machine has the same content hash already."""
        transport = self.reach()
        cache = f"{shlex.quote(self.machine.environment.workdir)}/payload/{bundle.content_hash[:16]}"
        out = check(transport, f"mkdir -p {cache} && cd {cache} && pwd && [ -f .complete ] && echo cached || true",
                    what=f"looking for the payload on {self.machine.id}")
        lines = out.decode().splitlines()
        self.payload_dir = lines[0]
        transport.put_bytes(suite_bytes, f"{self.run_dir}/{SUITE_FILE}")
        if lines[1:] == ["cached"]:
            return f"payload {bundle.content_hash[:12]} already there, not sent"
        archive = f"{self.run_dir}/{BUNDLE_FILE}"
        transport.put_bytes(bundle.archive, archive, progress=progress)
        python, parent = shlex.quote(self.python), shlex.quote(posixpath.dirname(self.payload_dir))
        # Unpacked beside the cache, then renamed into its place whole (PLACE_PAYLOAD): other runs on this machine
        # may be using the cache already.
        check(
            transport,
            f'filled="$(mktemp -d {parent}/{PARTIAL_PAYLOAD})" && {python} -c {shlex.quote(SAFE_EXTRACT)} '
            f'{shlex.quote(archive)} "$filled" && {python} -c {shlex.quote(PLACE_PAYLOAD)} "$filled" '
            f'{shlex.quote(self.payload_dir)}; status=$?; rm -f {shlex.quote(archive)}; '
            f'[ -z "$filled" ] || rm -rf "$filled"; exit $status',
            what=f"unpacking the payload on {self.machine.id}",
        )
        return f"{bundle.files} files, {len(bundle.archive)} bytes, sha256 {bundle.content_hash[:12]}"

    def start(self, env: dict[str, str]) -> int:
        """Starts the payload detached; returns its process group."""
        self.process = DetachedProcess(self.reach(), self.run_dir)
        argv = [self.python, "-m", "keras_bench", "--suite", SUITE_FILE, "--out", RESULTS_FILE]
        return self.process.start(argv, {"PYTHONPATH": self.payload_dir, **env})

    def collect(self, run_id: str) -> str:
        """Fetches the log (its last MAX_KEPT_LOG bytes, and its tail) and the results document (validated, and of
        this run) in one round trip.

        Raises:
            PayloadFailed: no results document, an invalid one, or one of another run.
        """
        assert self.process is not None
        self.collected = True
        collected = self.process.log_and_file(RESULTS_FILE)
        self.log, self.log_skipped = collected.kept_log()
        self.log_tail, raw = collected.log_tail(), collected.file
        if raw is None:
            raise PayloadFailed("no results document")
        document = parse_results(raw)
        if document.get("run_id") != run_id:
            raise PayloadFailed(f"the results document belongs to run {document.get('run_id')!r}, not {run_id!r}")
        self.results = document
        return f"{len(document['samples'])} samples, {len(document['errors'])} payload errors"


def clean_up(transport: Transport, run_dir: str) -> None:
    """Stops whatever payload runs in the run directory (its whole process group), then removes the directory.

    Idempotent: a directory that is already gone is not an error.
    """
    DetachedProcess(transport, run_dir).kill(then=f"rm -rf {shlex.quote(run_dir)}")


def tf_config(machines: list[Machine], index: int, port: int) -> str:
    """Returns the TF_CONFIG of worker ``index``: every machine's private address, one port per worker.

    Ports differ per worker so that several workers on one address (loopback tests) do not collide.
    """
    workers = [f"{m.address}:{port + i}" for i, m in enumerate(machines)]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
