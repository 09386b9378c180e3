"""The fault matrix's shared backends (built once per module: one sshd for the rented boxes, moto's EC2, one ARM
fake) and its report: every cell's outcome is collected, and when the whole matrix ran, ``docs/reliability.md`` is
written from it (only when its text changes, and with nothing in it that changes from run to run)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.injections import (
    FAULTS,
    INJECTIONS,
    NOTES,
    PROVIDERS,
    STEPS,
    ServerSlot,
    cell_id,
    cells,
    not_applicable,
    not_run,
)
from tests.integration.conftest import client_key, sshd_binary  # noqa: F401 - fixtures

REPORT = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
FACTS = "fault_facts"  # the user property a cell's test leaves its measurements in

# Backends --------------------------------------------------------------------------------------------------------


class Box:
    """A rented box: one loopback sshd, kept in a slot so that an outage can replace it with a restarted one."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.slot = ServerSlot(lambda: self.server, self._put)

    def _put(self, server: Any) -> None:
        self.server = server


@pytest.fixture(scope="module")
def rented_box(tmp_path_factory: pytest.TempPathFactory, client_key: Path, sshd_binary: Path) -> Iterator[Box]:  # noqa: F811
    """One sshd playing every rented box of the module (each cell's boxes have their own work directories)."""
    from tests.integration.conftest import start_server, write_key_pair

    directory = tmp_path_factory.mktemp("rented-box")
    write_key_pair(directory / "host_key")
    box = Box(start_server(directory / "sshd", client_key, directory / "host_key", sshd_binary=sshd_binary))
    yield box
    box.server.stop()


@pytest.fixture(scope="module")
def moto_module() -> Iterator[None]:
    """moto's AWS for the whole module, with fake credentials and the two regions the cells use."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        patch.delenv("ORCHESTRATE_AWS_SSH_ENDPOINT", raising=False)
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                            "ORCHESTRATE_AWS_REGIONS": "us-east-1,us-west-2"}.items():
            patch.setenv(name, value)
        with mock_aws():
            yield


@pytest.fixture(scope="module")
def arm_module() -> Iterator[Any]:
    """One ARM fake for the whole module, named by the environment as the Azure cloud."""
    from orchestrator.clouds.azure import CLOUD_ENV, SUBSCRIPTION_ENV
    from tests.fakes.arm import ArmFake

    fake = ArmFake().start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CLOUD_ENV, fake.url)
        patch.setenv(SUBSCRIPTION_ENV, fake.subscription)
        patch.delenv("ORCHESTRATE_AZURE_SSH_ENDPOINT", raising=False)
        try:
            yield fake
        finally:
            fake.stop()


# The report ------------------------------------------------------------------------------------------------------

_outcomes: dict[tuple[str, str, str], dict[str, Any]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keeps each matrix cell's outcome (pass, fail, known defect) and measurements."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    callspec = getattr(item, "callspec", None)
    cell = callspec.params.get("cell") if callspec is not None else None
    in_matrix = item.path.parent == Path(__file__).parent and item.path.name.startswith("test_matrix")
    if cell is None or not in_matrix or report.passed and report.when != "call":
        return
    facts = dict(next((value for name, value in item.user_properties if name == FACTS), {}))
    if hasattr(report, "wasxfail"):
        status = "known defect" if report.skipped else "FAIL (fixed? strict xfail)"
        facts["defect"] = str(report.wasxfail)
    elif report.passed:
        status = "pass"
    elif report.skipped:
        status = "skipped"
    else:
        status = "FAIL"
    previous = _outcomes.get(cell, {}).get("status")
    if previous is None or previous == "pass":  # a teardown error after a passing call still fails the cell
        _outcomes[cell] = {"status": status, **facts}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Writes docs/reliability.md when every cell of the matrix ran in this session."""
    expected = set(cells(subprocess=False)) | set(cells(subprocess=True))
    if not expected <= set(_outcomes) or any(_outcomes[c]["status"] == "skipped" for c in expected):
        return  # a partial run (-k, a single file, skipped cells) says nothing about the whole matrix
    text = render(_outcomes)
    if not REPORT.exists() or REPORT.read_text() != text:
        REPORT.write_text(text)


_MARK = {"pass": "ok", "known defect": "xfail", "FAIL": "**FAIL**", "FAIL (fixed? strict xfail)": "**XPASS**"}


def render(outcomes: dict[tuple[str, str, str], dict[str, Any]]) -> str:
    """The report's Markdown: totals, one table per fault (providers × steps), notes, the cells left out and why,
    the known defects."""
    ran = {cell: o for cell, o in outcomes.items() if not_applicable(*cell) is None and not_run(*cell) is None}
    leaks = sum(len(o.get("leaks", [])) for o in ran.values())
    lost = sum(int(o.get("lost", 0)) for o in ran.values())
    lost_known = sum(int(o.get("lost", 0)) for o in ran.values() if o["status"] == "known defect")
    failed = [c for c, o in ran.items() if o["status"] != "pass" and o["status"] != "known defect"]
    defects = [c for c, o in ran.items() if o["status"] == "known defect"]
    every = [(p, s, f) for p in PROVIDERS for s in STEPS for f in FAULTS]
    na = [cell for cell in every if not_applicable(*cell) is not None]
    left_out = [cell for cell in every if not_applicable(*cell) is None and not_run(*cell) is not None]
    lines = [
        "# Reliability: the fault matrix",
        "",
        "Generated by the fault matrix (`tests/faults/test_matrix*.py`) at the end of a `make test` (or "
        "`pytest tests/faults`) session that ran every cell; do not edit by hand.",
        "",
        "Every provider (local; rented boxes over real sshd; AWS on moto; Azure on the ARM fake, cloud machines played "
        "by loopback sshd with the run's injected host key) × every lifecycle step × each fault. Each cell runs a "
        "whole run (in-process through `execute_plan` with a stand-in payload, or the CLI for SIGKILL) with the "
        "fault injected once, then asserts: no machine left (the provider's own listing, the cloud fake's "
        "instances, groups, key pairs and security groups, leases, run directories, payload processes, the store's "
        "live machines), the run's recorded state and error, every sample the payload wrote before the fault in the "
        "store, and cost lines for every machine launched (more than $0 where the billing rule has a minimum).",
        "",
        f"**{len(ran)} cells, {leaks} leaks, {lost} lost results**"
        + (f" ({lost_known} in known-defect cells, below)" if lost_known else "")
        + f"; {len(failed)} failing, {len(defects)} known defects; {len(na)} cells n/a, {len(left_out)} left out.",
        "",
        "Legend: ok = every assertion held, with the run's recorded state in brackets; xfail = a known defect (a "
        "strict xfail, below); **FAIL** = an assertion failed; n/a = the fault cannot happen there; — = left out "
        "(below).",
        "",
    ]
    for fault in FAULTS:
        lines += [f"## {fault}", "", INJECTIONS[fault][0].upper() + INJECTIONS[fault][1:] + ".", "",
                  "| provider | " + " | ".join(STEPS) + " |", "|---" * (len(STEPS) + 1) + "|"]
        for provider in PROVIDERS:
            lines.append(f"| {provider} | " + " | ".join(_mark(ran, (provider, step, fault)) for step in STEPS) + " |")
        lines.append("")
    lines += ["## Notes", ""] + [f"- `{cell_id(*cell)}`: {note}." for cell, note in NOTES.items()]
    lines += ["", "## Cells n/a and left out", ""]
    reasons: dict[str, list[str]] = {}
    for cell in [*na, *left_out]:
        reasons.setdefault(str(not_applicable(*cell) or not_run(*cell)), []).append(cell_id(*cell))
    lines += [f"- {reason}: {len(ids)} cells ({_ranges(ids)})" for reason, ids in reasons.items()]
    lines += ["", "## Known defects", ""]
    by_defect: dict[str, list[str]] = {}
    for cell in defects:
        by_defect.setdefault(str(ran[cell].get("defect", "")), []).append(cell_id(*cell))
    lines += [f"- {', '.join(f'`{i}`' for i in ids)}: {reason}" for reason, ids in by_defect.items()] or ["None."]
    if failed:
        lines += ["", "## Failing cells", ""] + [f"- `{cell_id(*c)}`: {ran[c].get('problems', '')}" for c in failed]
    return "\n".join(lines).rstrip() + "\n"


def _mark(ran: dict[tuple[str, str, str], dict[str, Any]], cell: tuple[str, str, str]) -> str:
    """One cell of a fault's table."""
    if not_applicable(*cell) is not None:
        return "n/a"
    if not_run(*cell) is not None:
        return "—"
    outcome = ran.get(cell)
    if outcome is None:
        return "not run"
    state = outcome.get("state")
    return _MARK.get(outcome["status"], outcome["status"]) + (f" ({state})" if state else "")


def _ranges(ids: list[str]) -> str:
    """The cell ids, shortened when there are many."""
    return ", ".join(ids) if len(ids) <= 6 else ", ".join(ids[:4]) + f", … {len(ids) - 4} more"
