"""`orchestrate …`: parse, call :mod:`orchestrator.api`, render with rich; no logic here.

The group and the run verbs live in :mod:`orchestrator.cli.runs`; inventory, catalog and breakeven in
:mod:`orchestrator.cli.machines`; the two consoles, and the listings, tables and files printed to them, in
:mod:`orchestrator.cli.console`.
"""

from orchestrator.cli.runs import cli, main

__all__ = ["cli", "main"]
