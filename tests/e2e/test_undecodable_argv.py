"""Argument bytes that are not UTF-8, as a shell hands them over (`orchestrate status $'\\xff\\xfe'`): refused in one
line naming what they were given for (RUN, an option), exit 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env

BAD = b"\xff\xfe"


@pytest.mark.parametrize(("argv", "field"), [
    ([b"status", BAD], "RUN"),
    ([b"report", BAD], "RUN"),
    ([b"report", b"--format", b"md", b"r-1", BAD], "RUN"),
    ([b"down", BAD], "RUN"),
    ([b"down", b"--profile", BAD], "--profile"),
    ([b"logs", BAD], "RUN"),
    ([b"run", b"--name=" + BAD], "--name"),
    ([b"campaign", b"status", BAD], "NAME"),
], ids=lambda value: os.fsdecode(b" ".join(value)) if isinstance(value, list) else value)
def test_an_undecodable_argument_is_refused_naming_it(home: Path, argv: list[bytes], field: str) -> None:
    result = subprocess.run([os.fsencode(sys.executable), b"-m", b"orchestrator", *argv], capture_output=True,
                            timeout=120, env=cli_env(home))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    assert stderr.splitlines() == [f"error: invalid {field}: received b'\\xff\\xfe'; accepted: UTF-8 text (the bytes "
                                   "given are not)"]
    assert result.stdout == b""
    assert not home.exists()  # nothing written: not even a store
