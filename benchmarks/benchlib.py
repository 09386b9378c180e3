"""What the `make bench` scripts share: the command line, machine facts, median-and-range text, section writing,
and the stand-ins (a payload without Keras, fake AWS credentials, sshd's directory) several of them run against.

Each bench script owns one section of docs/performance.md between its own begin and end markers and
rewrites only that section, so the scripts can run in any order.

Importing this module puts the repository root on ``sys.path``: the scripts run as ``python benchmarks/NAME.py``
(so ``benchmarks/`` is on the path, not the root) and several import the test fakes and helpers under ``tests/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
PERFORMANCE_MD = REPO / "docs" / "performance.md"
DEFAULT_HEADER = "# Performance\n\nFigures measured by `make bench`.\n"
ORCHESTRATE = str(Path(sys.executable).with_name("orchestrate"))  # the CLI of the venv running the bench

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """Returns the script's argument parser: described by its docstring's first line, with ``--output``.

    Args:
        doc: The script's ``__doc__``.
    """
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--output", type=Path, default=PERFORMANCE_MD,
                        help="the Markdown file whose section is rewritten (default docs/performance.md)")
    return parser


@dataclass(frozen=True)
class Section:
    """One script's section of docs/performance.md, between ``<!-- bench:NAME:begin -->`` and its end marker."""

    name: str

    @property
    def begin(self) -> str:
        """The marker line that opens the section."""
        return f"<!-- bench:{self.name}:begin -->"

    @property
    def end(self) -> str:
        """The marker line that closes it."""
        return f"<!-- bench:{self.name}:end -->"

    def text(self, lines: Sequence[str]) -> str:
        """Returns the section: the lines between its markers."""
        return "\n".join([self.begin, *lines, self.end])

    def publish(self, output: Path, text: str) -> None:
        """Writes ``text`` (from ``text()``) into ``output`` in place of the section's old text, and prints it."""
        write_section(output, text, self.begin, self.end)
        print(text)


def cpu_name() -> str:
    """Returns the CPU model from /proc/cpuinfo, or what ``platform`` says where that file is missing."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = re.findall(r"model name\s*:\s*(.*)", cpuinfo.read_text(encoding="utf-8", errors="replace"))
        if names:
            return str(names[0]).strip()
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """Returns e.g. ``AMD EPYC 7B13, 2 cores, Python 3.11.7``."""
    return f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def measured_on() -> str:
    """Returns the start of every section's first sentence: ``Measured 2026-12-01 on <machine_line()>``."""
    return f"Measured {time.strftime('%Y-%m-%d')} on {machine_line()}"


def make_bench_command(script: str, also: str = "") -> str:
    """Returns the section's ``Command:`` line for a script that `make bench` runs with its default options.

    Args:
        script: The script's ``__file__``.
        also: Said after the command, e.g. how to run the same by hand.
    """
    runs = f"`make bench` (runs `python benchmarks/{Path(script).name} --output docs/performance.md`)"
    return f"Command: {runs}{'; ' + also if also else ''}."


def median_range(values: Sequence[float], digits: int = 3) -> str:
    """Formats values as ``median (min a, max b)``."""
    return f"{statistics.median(values):.{digits}f} (min {min(values):.{digits}f}, max {max(values):.{digits}f})"


def write_section(path: Path, section: str, begin: str, end: str) -> None:
    """Replaces the text from ``begin`` to ``end`` in ``path`` with ``section``, or appends it.

    Args:
        path: The Markdown file; created with a short header when missing.
        section: The new section, including its own begin and end markers.
        begin: The marker line that opens the section.
        end: The marker line that closes it.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else DEFAULT_HEADER
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def timed_run(argv: Sequence[str], env: dict[str, str], timeout_s: float) -> float:
    """Runs a command to its end (its output captured, a failure raised) and returns its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run(list(argv), check=True, capture_output=True, env=env, timeout=timeout_s)
    return time.perf_counter() - started


def run_payload(suite: str, params: dict[str, Any], directory: Path, *, run_id: str = "bench",
                timeout_s: float = 1800) -> dict[str, Any]:
    """Runs one suite through the payload's CLI as the orchestrator would (``python -m keras_bench`` from this tree,
    TensorFlow backend), in ``directory``, and returns its results document.

    Args:
        suite: The suite's name.
        params: Its params; the suite's defaults fill the rest.
        directory: Where the suite document, the results and any file the suite writes go.
        run_id: The document's run id, also naming its files.
        timeout_s: How long the run may take.
    """
    suite_file, out = directory / f"{run_id}-suite.json", directory / f"{run_id}-results.json"
    suite_file.write_text(json.dumps({"schema_version": 1, "suite": suite, "run_id": run_id, "params": params}))
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS), "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-m", "keras_bench", "--suite", str(suite_file), "--out", str(out)], env=env,
                   cwd=directory, check=True, capture_output=True, timeout=timeout_s)
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


def stand_in_payload(root: Path, main_body: str) -> Path:
    """Writes a stand-in ``keras_bench`` package for ``ORCHESTRATE_PAYLOAD_DIR``: what the orchestrator adds to a run,
    without Keras's CPU use.

    Its ``__main__`` is tests/conftest.py's ``FAKE_MAIN_HEADER`` (``write`` and ``sample`` write a valid results
    document) followed by ``main_body``; the real results schema and the smoke suite file are copied beside it.

    Args:
        root: A directory; the package goes to ``root/fixed_payload/keras_bench``.
        main_body: Python code, dedented here.

    Returns:
        The package directory.
    """
    from tests.conftest import FAKE_MAIN_HEADER

    package = root / "fixed_payload" / "keras_bench"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_MAIN_HEADER + textwrap.dedent(main_body))
    (package / "results.schema.json").write_bytes((BENCHMARKS / "keras_bench" / "results.schema.json").read_bytes())
    (package.parent / "suites").mkdir()
    (package.parent / "suites" / "smoke.yaml").write_bytes((BENCHMARKS / "suites" / "smoke.yaml").read_bytes())
    return package


def use_fake_aws_credentials() -> None:
    """Replaces every ``AWS_*`` variable of this process with moto's test credentials and no config files, so the
    real AWS provider under moto can never reach a real account."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                       "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})


def prepare_sshd() -> None:
    """Creates sshd's privilege-separation directory, without which the loopback sshd boxes refuse to start."""
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
