"""The one provider contract suite, run against every provider: local, rented (real sshd), aws (moto + a loopback
sshd with the run's host key), azure (the ARM fake + a loopback sshd with the run's host key), and the fake."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from orchestrator.inventory.model import Inventory
from orchestrator.machine import Placement
from orchestrator.providers.aws.instance import AwsProvider
from orchestrator.providers.azure.vm import AzureProvider
from orchestrator.providers.local import LocalProvider
from orchestrator.providers.rented import RentedProvider
from orchestrator.store import Store, StoreLeases
from tests.fakes import azure as azure_fakes
from tests.fakes.arm import ArmFake
from tests.fakes.aws import LoopbackAws
from tests.fakes.azure import LoopbackAzure, provider_for
from tests.fakes.provider import FakeProvider
from tests.integration.conftest import start_server
from tests.providers.contract import ProviderContract

arm = azure_fakes.arm  # the fixture


class TestLocalProvider(ProviderContract):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> LocalProvider:
        return LocalProvider(tmp_path / "home")

    @pytest.fixture
    def placement(self) -> Placement:
        return Placement(provider="local", instance_type="local", price_per_hour=0.5)


class TestRentedProvider(ProviderContract):
    count = 2

    @pytest.fixture
    def provider(self, tmp_path: Path, sshd: Callable[..., Any]) -> Any:
        servers = [sshd(), sshd()]
        inventory = Inventory.model_validate({"hosts": [
            {"name": f"box{i}", "host": s.host, "port": s.port, "user": s.user, "key_path": str(s.client_key_path),
             "host_key": s.host_key, "price": {"per_hour": 1.5 + i}, "workdir": str(tmp_path / f"box{i}")}
            for i, s in enumerate(servers)
        ]})
        store = Store(tmp_path / "home")
        # Each contract run is a run the store knows, so its leases are held by a live run.
        original = store.acquire_lease

        def acquire(box: str, run_id: str) -> Any:
            if run_id not in {r.id for r in store.list_runs()}:
                store.create_run(run_id, provider="rented", suite="smoke", name=None, spec={})
            return original(box, run_id)

        store.acquire_lease = acquire  # type: ignore[method-assign]
        yield RentedProvider(tmp_path / "home", leases=StoreLeases(store), inventory=inventory)
        store.close()

    @pytest.fixture
    def placement(self) -> Placement:
        return Placement(provider="rented", instance_type="any 2", price_per_hour=2.5, hosts=("box0", "box1"))

    def test_each_box_is_priced_at_its_own_price(self, provider: Any, placement: Placement) -> None:
        from orchestrator.machine import LaunchRequest

        machines = provider.launch(LaunchRequest(run_id="r-prices", placement=placement, count=2))
        try:
            assert {m.id: m.placement.price_per_hour for m in machines} == {"box0": 1.5, "box1": 2.5}
        finally:
            provider.terminate("r-prices", machines)


class TestFakeProvider(ProviderContract):
    count = 2

    @pytest.fixture
    def provider(self, tmp_path: Path) -> FakeProvider:
        return FakeProvider(root=tmp_path / "fake", python=sys.executable)

    @pytest.fixture
    def placement(self) -> Placement:
        return Placement(provider="fake", instance_type="gpu.small", region="lab-1", price_per_hour=3.6,
                         billing_rule="aws_linux")


class TestAwsProvider(ProviderContract):
    count = 2

    @pytest.fixture
    def provider(self, tmp_path: Path, moto_aws: None, sshd_binary: Path) -> Iterator[LoopbackAws]:
        aws = LoopbackAws(AwsProvider(tmp_path / "home", sleep=lambda _: None), tmp_path / "loopback",
                          partial(start_server, sshd_binary=sshd_binary))
        yield aws
        aws.stop()

    @pytest.fixture
    def placement(self) -> Placement:
        return Placement(provider="aws", instance_type="g5.xlarge", region="us-east-1", price_per_hour=1.006,
                         billing_rule="aws_linux")


class TestAzure(ProviderContract):
    count = 2

    @pytest.fixture
    def provider(self, tmp_path: Path, arm: ArmFake, sshd_binary: Path) -> Iterator[LoopbackAzure]:
        azure: AzureProvider = provider_for(arm, tmp_path / "home")
        loopback = LoopbackAzure(azure, arm, tmp_path / "loopback", partial(start_server, sshd_binary=sshd_binary))
        yield loopback
        loopback.stop()

    @pytest.fixture
    def placement(self) -> Placement:
        return Placement(provider="azure", instance_type="Standard_NC4as_T4_v3", region="eastus", price_per_hour=0.526,
                         billing_rule="per_minute_full")
