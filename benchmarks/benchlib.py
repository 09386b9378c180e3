"""Helpers the `make bench` scripts share: machine facts, median-and-range text, and section writing.

Each bench script owns one section of docs/performance.md between its own begin and end markers and
rewrites only that section, so the scripts can run in any order.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

DEFAULT_HEADER = "# Performance\n\nFigures measured by `make bench`.\n"


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
