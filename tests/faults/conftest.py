"""The fault matrix's shared backends (built once per module: one sshd for the rented boxes, moto's EC2, one ARM
fake), and each cell's outcome put on its test report for tests/faults/report.py, which writes
``docs/reliability.md`` when the whole matrix ran."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.injections import ServerSlot
from tests.faults.report import FACTS, OUTCOME
from tests.integration.conftest import client_key, sshd_binary  # noqa: F401 - fixtures

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


# The report (written by tests/faults/report.py from the outcomes the reports carry) -----------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Puts a matrix cell's outcome (pass, fail, known defect) and measurements on its report, where the process that
    writes the report reads it (under pytest-xdist the reports travel from the workers to the controller)."""
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
    report.user_properties.append((OUTCOME, {"cell": list(cell), "status": status, **facts}))
