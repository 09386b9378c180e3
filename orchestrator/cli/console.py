"""The two consoles every command prints to: results on stdout, errors and notes on stderr."""

from __future__ import annotations

import sys

from rich.console import Console

# Piped output (CI logs, files) is not folded at 80 columns: reports are wide.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)
