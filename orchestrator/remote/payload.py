"""The payload bundle: ``keras_bench`` + the resolved suite document, packed with a manifest.

The orchestrator never imports ``keras_bench``; it only finds its source directory (``find_spec`` on a
top-level package does not execute it) and ships the files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestrateError, SpecError
from orchestrator.payload_files import PAYLOAD_PACKAGE, payload_source_dir
from orchestrator.remote.transport import without_credentials

SUITE_FILE = "suite.json"
MANIFEST_FILE = "MANIFEST.json"
# Members of the source tree that never travel.
_SKIP_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
# The start of a PEM or OpenSSH private key: a file holding one is never packed (it would reach every machine).
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


@dataclass(frozen=True)
class Bundle:
    """A packed payload: a gzipped tar and the hash of its content."""

    archive: bytes
    content_hash: str  # sha256 over the manifest, so equal content gives an equal hash
    files: int


def _payload_files(source: Path) -> list[Path]:
    files = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and not _SKIP_PARTS.intersection(rel.parts) and path.suffix != ".pyc":
            files.append(path)
    return files


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # reproducible archives: same content, same bytes
    tar.addfile(info, io.BytesIO(data))


def build_bundle() -> Bundle:
    """Packs the ``keras_bench`` package into a reproducible ``.tar.gz`` with a manifest.

    The suite document travels separately (it differs per run), so equal payload code gives an equal
    content hash, and a machine that already holds that hash is not sent the bundle again.

    Returns:
        The archive bytes, with a manifest of every member's sha256.

    Raises:
        OrchestrateError: a file of the payload directory holds a private key (it would be sent to every machine).
    """
    source = payload_source_dir()
    members: dict[str, bytes] = {}
    for path in _payload_files(source):
        data = path.read_bytes()
        if _PRIVATE_KEY.search(data):
            raise OrchestrateError(
                f"the payload directory holds a private key, which would be sent to every machine: {path}",
                hint=f"move it out of {source}; every file there goes into the payload bundle",
            )
        members[f"{PAYLOAD_PACKAGE}/{path.relative_to(source).as_posix()}"] = data
    manifest = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(members.items())}
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, data in sorted(members.items()):
            _add_bytes(tar, name, data)
        _add_bytes(tar, MANIFEST_FILE, manifest_bytes)
    return Bundle(
        archive=buffer.getvalue(),
        content_hash=hashlib.sha256(manifest_bytes).hexdigest(),
        files=len(members),
    )


def suite_document(suite: str, run_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Returns the document the payload reads as ``--suite``."""
    return {"schema_version": 1, "suite": suite, "run_id": run_id, "params": params}


def check_params(suite: str, params: dict[str, Any], *, timeout_s: float = 60.0) -> None:
    """Has the payload check a suite's params the way a run would, before any machine is launched.

    Runs ``python -m keras_bench --check`` from the payload source that would be pushed (stdlib and numpy
    only: no Keras import), so there is one set of param rules, the payload's.

    Raises:
        SpecError: the payload rejects a param; the message is the payload's one line.
        OrchestrateError: the check itself could not run.
    """
    with tempfile.TemporaryDirectory(prefix="orchestrate-check-") as tmp:
        path = Path(tmp) / SUITE_FILE
        path.write_text(json.dumps(suite_document(suite, "r-check", params)))
        # The payload's code runs here: it gets no more of this computer's credentials than it would on a machine.
        env = {**without_credentials(os.environ), "PYTHONPATH": str(payload_source_dir().parent)}
        try:
            result = subprocess.run(
                [sys.executable, "-m", PAYLOAD_PACKAGE, "--suite", str(path), "--check"],
                capture_output=True, text=True, timeout=timeout_s, env=env, stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise OrchestrateError(f"could not check the suite params with the payload: {error}") from error
    lines = result.stderr.strip().splitlines()
    if result.returncode == 2 and lines:
        message = lines[-1].removeprefix(f"{PAYLOAD_PACKAGE}: error: ")
        raise SpecError("params", params, "what the payload accepts", message=f"invalid {message}")
    if result.returncode != 0:
        raise OrchestrateError(
            f"checking the suite params with the payload failed (exit {result.returncode}): "
            f"{lines[-1] if lines else 'no output'}"
        )


# Run on the machine with its Python: extracts a bundle refusing absolute paths, "..", links and devices, so
# an archive can never write outside its directory. Where the machine's Python has tarfile's extraction filters
# (3.12, and 3.8.17+/3.9.17+/3.10.12+/3.11.4+), the "data" filter extracts (and checks again); elsewhere a plain
# loop that writes only regular files and directories. argv: archive, destination.
SAFE_EXTRACT = """
import os, sys, tarfile
archive, dest = sys.argv[1], os.path.realpath(sys.argv[2])
with tarfile.open(archive, "r:gz") as tar:
    members = tar.getmembers()
    for m in members:
        target = os.path.realpath(os.path.join(dest, m.name))
        if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()) \\
                or os.path.commonpath([dest, target]) != dest:
            sys.exit("unsafe member in payload bundle: " + repr(m.name))
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=members, filter="data")
        sys.exit(0)
    for m in members:
        target = os.path.join(dest, m.name)
        if m.isdir():
            os.makedirs(target, mode=0o755, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        with tar.extractfile(m) as src, open(target, "wb") as out:
            out.write(src.read())
"""


# Run on the machine with its Python after SAFE_EXTRACT filled a fresh directory beside the cache: marks it complete
# and renames it into the cache's place in one step, so a run never sees the payload half-written (runs on one box
# share the cache: an extraction in place once truncated files another run's payload was importing). A cache that a
# run placed first is kept (same name, same content hash); one left incomplete by an older in-place extraction is
# set aside and replaced. argv: the filled directory, the cache directory (absent or empty, or as described).
PLACE_PAYLOAD = """
import os, shutil, sys, tempfile
filled, cache = sys.argv[1], sys.argv[2]
open(os.path.join(filled, ".complete"), "w").close()
for _ in range(3):
    if os.path.exists(os.path.join(cache, ".complete")):
        break
    try:
        os.rename(filled, cache)  # atomic; it replaces an empty directory and fails on one with files
        break
    except OSError:
        aside = tempfile.mkdtemp(dir=os.path.dirname(cache), prefix=".stale-")
        try:
            os.rename(cache, os.path.join(aside, "stale"))
        except OSError:
            pass
        shutil.rmtree(aside, ignore_errors=True)
shutil.rmtree(filled, ignore_errors=True)
if not os.path.exists(os.path.join(cache, ".complete")):
    sys.exit("could not place the payload at " + cache)
"""


def payload_requirements() -> list[str]:
    """Returns what a fresh venv on a machine needs to run the payload: the ``payload`` extra of this package."""
    from importlib import metadata

    try:
        requires = metadata.requires("orchestrate") or []
    except metadata.PackageNotFoundError:
        requires = []
    chosen = []
    for line in requires:
        requirement, _, marker = line.partition(";")
        if "extra" in marker and "payload" in marker:
            chosen.append(requirement.strip())
    return chosen or ["keras>=3.5", "tensorflow>=2.16", "numpy>=1.26", "scikit-learn>=1.3", "jsonschema>=4.20"]
