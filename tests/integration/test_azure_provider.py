"""The Azure provider against the ARM fake in-process (the real SDK clients over loopback HTTP): the run's resource
group and network, its keys, the translation of Azure's refusals, Spot, teardown, and the pinned host key over a real
sshd."""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.clouds.azure import AzureSettings
from orchestrator.errors import CapacityError, HostKeyMismatch, QuotaError, SpecError
from orchestrator.machine import LaunchRequest, Placement
from orchestrator.providers.azure.vm import AzureProvider
from orchestrator.providers.keys import KEY_FILE, SSHEndpoint, key_dir
from orchestrator.remote.connect import transport_to
from tests.fakes import azure as azure_fakes
from tests.fakes.arm import ArmFake
from tests.fakes.azure import CIDR, REGION, provider_for

arm = azure_fakes.arm  # the fixture

PLACEMENT = Placement(provider="azure", instance_type="Standard_NC4as_T4_v3", region=REGION, price_per_hour=0.526,
                      billing_rule="per_minute_full")
SPOT = Placement(provider="azure", instance_type="Standard_NC4as_T4_v3", region=REGION, spot=True, max_price=0.3,
                 price_per_hour=0.158, billing_rule="per_minute_full")  # the catalog's spot price
QUOTA_MESSAGE = ("Operation could not be completed as it results in exceeding approved Standard NCASv3_T4 Family "
                 "Cores quota. Additional details - Location: eastus")

# Shaped like Azure's own refusal (its portal link for the request is one long word): over 400 characters before the
# first address ends.
QUOTA_MESSAGE_IN_FULL = (
    "Operation could not be completed as it results in exceeding approved standardNCASv3_T4Family Cores quota. "
    "Additional details - Deployment Model: Resource Manager, Location: eastus, Current Limit: 0, Current Usage: 0, "
    "Additional Required: 4, (Minimum) New Limit Required: 4. Submit a request for Quota increase at "
    "https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView/Parameters/"
    "%7B%22subscriptionId%22:%2200000000-0000-0000-0000-000000000000%22,%22command%22:%22openQuotaApprovalBlade%22,"
    "%22quotas%22:[%7B%22location%22:%22eastus%22,%22providerId%22:%22Microsoft.Compute%22,%22resourceName%22:"
    "%22standardNCASv3_T4Family%22,%22quotaRequest%22:%7B%22properties%22:%7B%22limit%22:4,%22unit%22:%22Count%22,"
    "%22name%22:%7B%22value%22:%22standardNCASv3_T4Family%22%7D%7D%7D%7D]%7D by specifying parameters listed in the "
    "'Details' section for deployment to succeed. Please read more about quota limits at "
    "https://docs.microsoft.com/en-us/azure/azure-supportability/per-vm-quota-requests")


def _request(run_id: str, **changes: Any) -> LaunchRequest:
    fields: dict[str, Any] = {"run_id": run_id, "placement": PLACEMENT, "allowed_cidr": CIDR}
    return LaunchRequest(**{**fields, **changes})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def provider(arm: ArmFake, home: Path) -> AzureProvider:
    return provider_for(arm, home)


def _of_type(fake: ArmFake, group: str, kind: str) -> list[dict[str, Any]]:
    return sorted((r for r in fake.resources(group) if r["type"] == kind), key=lambda r: str(r["name"]))


def _puts(fake: ArmFake, kind: str) -> list[str]:
    return [path for method, path in fake.requests if method == "PUT" and f"/{kind}/" in path]


def test_a_launch_makes_one_resource_group_named_and_tagged_for_the_run(
    provider: AzureProvider, arm: ArmFake
) -> None:
    [machine] = provider.launch(_request("r-group"))
    [group] = arm.groups()
    assert group["name"] == "orchestrate-r-group" and group["location"] == REGION
    tags = group["tags"]
    assert tags["orchestrate-run-id"] == "r-group"
    assert tags["orchestrate-owner"] and tags["orchestrate-created-at"].startswith("20")
    assert machine.extra["resource_group"] == "orchestrate-r-group"
    assert {r["name"] for r in arm.resources()} == {r["name"] for r in arm.resources("orchestrate-r-group")}


def test_the_security_group_lets_only_ssh_in_and_only_from_the_given_address(
    provider: AzureProvider, arm: ArmFake
) -> None:
    provider.launch(_request("r-nsg", allowed_cidr="198.51.100.4/32"))
    [nsg] = _of_type(arm, "orchestrate-r-nsg", "Microsoft.Network/networkSecurityGroups")
    allowed_in = [r["properties"] for r in nsg["properties"]["securityRules"]
                  if r["properties"]["direction"] == "Inbound" and r["properties"]["access"] == "Allow"]
    assert [(r["protocol"], r["destinationPortRange"], r["sourceAddressPrefix"]) for r in allowed_in] == [
        ("Tcp", "22", "198.51.100.4/32")]
    nics = _of_type(arm, "orchestrate-r-nsg", "Microsoft.Network/networkInterfaces")
    assert [n["properties"]["networkSecurityGroup"]["id"] for n in nics] == [nsg["id"]]


@pytest.mark.parametrize("cidr", [None, "", "0.0.0.0/0", "::/0", "not-a-network"])
def test_a_launch_without_a_narrow_allowed_cidr_is_refused_before_anything_is_made(
    provider: AzureProvider, arm: ArmFake, home: Path, cidr: str | None
) -> None:
    with pytest.raises(SpecError, match="allowed_cidr"):
        provider.launch(_request("r-open", allowed_cidr=cidr))
    assert [path for method, path in arm.requests if method == "PUT"] == []
    assert arm.groups() == [] and not key_dir(home, "r-open").exists()


def test_an_image_that_is_not_an_azure_one_is_refused_before_anything_is_made(
    provider: AzureProvider, arm: ArmFake
) -> None:
    with pytest.raises(SpecError, match="--image"):
        provider.launch(_request("r-ami", image="ami-0123456789abcdef0"))
    assert [path for method, path in arm.requests if method == "PUT"] == []


def test_the_vm_takes_only_the_run_s_ssh_key_with_password_login_off(
    provider: AzureProvider, arm: ArmFake, home: Path
) -> None:
    [machine] = provider.launch(_request("r-login"))
    [vm] = _of_type(arm, "orchestrate-r-login", "Microsoft.Compute/virtualMachines")
    linux = vm["properties"]["osProfile"]["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    public = (key_dir(home, "r-login") / (KEY_FILE + ".pub")).read_text().strip()
    assert [k["keyData"] for k in linux["ssh"]["publicKeys"]] == [public]
    assert "adminPassword" not in vm["properties"]["osProfile"]
    assert machine.access.key_path == str(key_dir(home, "r-login") / KEY_FILE)
    assert (machine.access.user, machine.access.port, machine.access.trust_on_first_use) == ("azureuser", 22, False)
    [address] = _of_type(arm, "orchestrate-r-login", "Microsoft.Network/publicIPAddresses")
    assert machine.access.host == address["properties"]["ipAddress"]


def test_the_host_key_s_private_half_is_in_the_custom_data_only_never_on_disk(
    provider: AzureProvider, arm: ArmFake, tmp_path: Path
) -> None:
    [machine] = provider.launch(_request("r-hostkey"))
    text = arm.custom_data(machine.id)
    assert text is not None and text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    keys = document["ssh_keys"]
    assert keys["ed25519_public"] == machine.access.host_key
    assert (machine.access.host_key or "").startswith("ssh-ed25519 ")
    # cloud-init generates no key when ssh_keys is given; the schema wants a non-empty ssh_genkeytypes all the same.
    assert document["ssh_deletekeys"] is True and document["ssh_genkeytypes"] == ["ed25519"]
    secret = "".join(keys["ed25519_private"].splitlines()[1:-1])  # the key's base64 body (its start is common)
    on_disk = [p for p in tmp_path.rglob("*") if p.is_file()
               and secret in "".join(p.read_text(errors="replace").splitlines())]
    assert on_disk == []
    assert secret not in "".join(str(arm.resources()).split())  # Azure never returns the custom data either


def test_two_machines_get_two_vms_with_their_own_nics_and_private_addresses_in_one_subnet(
    provider: AzureProvider, arm: ArmFake
) -> None:
    machines = provider.launch(_request("r-pair", count=2))
    group = "orchestrate-r-pair"
    vms = _of_type(arm, group, "Microsoft.Compute/virtualMachines")
    nics = _of_type(arm, group, "Microsoft.Network/networkInterfaces")
    [vnet] = _of_type(arm, group, "Microsoft.Network/virtualNetworks")
    assert len(vms) == 2 and len(nics) == 2 and len(machines) == 2
    assert sorted(vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"] for vm in vms) == sorted(
        nic["id"] for nic in nics)
    configurations = [nic["properties"]["ipConfigurations"][0]["properties"] for nic in nics]
    [subnet] = vnet["properties"]["subnets"]
    assert {c["subnet"]["id"] for c in configurations} == {subnet["id"]}
    private = {c["privateIPAddress"] for c in configurations}
    assert len(private) == 2 and {m.private_address for m in machines} == private
    assert len({m.access.host for m in machines}) == 2  # a public address each
    assert {m.access.host_key for m in machines} == {machines[0].access.host_key}  # one run, one host key


def test_sku_not_available_at_the_vm_put_is_a_capacity_error_naming_the_code(
    provider: AzureProvider, arm: ArmFake
) -> None:
    arm.fail("virtualMachines", "SkuNotAvailable", status=409,
             message="The requested size for resource 'r-sku-0' is currently not available in location 'eastus'.")
    with pytest.raises(CapacityError, match="SkuNotAvailable") as caught:
        provider.launch(_request("r-sku"))
    assert not isinstance(caught.value, QuotaError)
    assert "\n" not in str(caught.value)


def test_allocation_failed_inside_the_operation_is_a_capacity_error_saying_the_vm_create_failed(
    provider: AzureProvider, arm: ArmFake
) -> None:
    arm.fail("virtualMachines", "AllocationFailed", in_operation=True,
             message="Allocation failed. We do not have sufficient capacity for the requested VM size in this region.")
    with pytest.raises(CapacityError, match="AllocationFailed") as caught:
        provider.launch(_request("r-alloc"))
    # The SDK raises it with the HTTP status of the poll that found the operation Failed (200): not a refusal.
    assert ("the VM create operation failed: AllocationFailed: Allocation failed. We do not have sufficient "
            "capacity for the requested VM size in this region.") in str(caught.value)
    assert "HTTP" not in str(caught.value)
    [vm] = _of_type(arm, "orchestrate-r-alloc", "Microsoft.Compute/virtualMachines")
    assert vm["properties"]["provisioningState"] == "Failed"  # the sweep finds it by the group's tag


def test_a_cores_quota_is_a_quota_error_naming_the_family_on_one_line(provider: AzureProvider, arm: ArmFake) -> None:
    arm.fail("virtualMachines", "OperationNotAllowed", status=409, message=QUOTA_MESSAGE)
    with pytest.raises(QuotaError) as caught:
        provider.launch(_request("r-quota"))
    assert not isinstance(caught.value, CapacityError)
    assert '"Standard NCASv3_T4 Family" vCPUs' in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_long_quota_refusal_keeps_its_addresses_whole(provider: AzureProvider, arm: ArmFake) -> None:
    arm.fail("virtualMachines", "OperationNotAllowed", status=409, message=QUOTA_MESSAGE_IN_FULL)
    with pytest.raises(QuotaError) as caught:
        provider.launch(_request("r-quota-url"))
    line = str(caught.value)
    addresses = [word for word in QUOTA_MESSAGE_IN_FULL.split() if "://" in word]
    assert len(addresses) == 2 and all(address in line for address in addresses), line
    assert '"standardNCASv3_T4Family" vCPUs' in line and "\n" not in line


def test_a_quota_refusing_the_second_vm_returns_only_once_the_first_vm_s_creation_has_ended(
    provider: AzureProvider, arm: ArmFake
) -> None:
    def second_vm(body: dict[str, Any]) -> bool:
        return str(body["properties"]["osProfile"]["computerName"]).endswith("-1")

    # The cores quota has room for one VM of the two: Azure accepts the first PUT and refuses the second.
    arm.fail("virtualMachines", "OperationNotAllowed", message=QUOTA_MESSAGE, when=second_vm)
    arm.latency_s = 1.0
    with pytest.raises(QuotaError):
        provider.launch(_request("r-half", count=2))
    still_running = [(o["kind"], o["name"]) for o in arm.operations if o["status"] == "InProgress"]
    assert still_running == []  # the lifecycle's sweep deletes the group next: nothing may still be in the making


def test_throttling_once_is_retried_by_the_sdk_and_the_launch_succeeds(provider: AzureProvider, arm: ArmFake) -> None:
    arm.fail("virtualMachines", "TooManyRequests", status=429, times=1)
    [machine] = provider.launch(_request("r-throttled"))
    assert len(_puts(arm, "virtualMachines")) == 2  # refused once, then accepted
    assert [vm["name"] for vm in _of_type(arm, "orchestrate-r-throttled", "Microsoft.Compute/virtualMachines")] == [
        machine.id]


def test_a_group_of_the_same_name_still_being_deleted_is_waited_out(arm: ArmFake, home: Path) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    provider = AzureProvider(home, AzureSettings(arm.subscription, arm.url, ""), polling_interval=0.05, sleep=sleep)
    provider.launch(_request("r-again"))
    arm.latency_s = 0.5
    provider.clients.resource.resource_groups.begin_delete("orchestrate-r-again")  # not waited for
    arm.latency_s = 0.0
    [machine] = provider.launch(_request("r-again", attempt=2))
    group_puts = [path for method, path in arm.requests
                  if method == "PUT" and path.lower().endswith("/resourcegroups/orchestrate-r-again")]
    assert len(group_puts) >= 3  # the first launch's, at least one refused while the old group was going, the last
    assert slept and set(slept) == {0.05}  # waited between tries at the provider's polling interval
    [group] = arm.groups()
    assert group["tags"]["orchestrate-attempt"] == "2" and group["properties"]["provisioningState"] == "Succeeded"
    assert [vm["name"] for vm in _of_type(arm, "orchestrate-r-again", "Microsoft.Compute/virtualMachines")] == [
        machine.id]


def test_terminate_deletes_the_group_and_the_local_key_and_is_idempotent(
    provider: AzureProvider, arm: ArmFake, home: Path
) -> None:
    machines = provider.launch(_request("r-down"))
    assert key_dir(home, "r-down").is_dir()
    provider.terminate("r-down", machines)
    assert arm.groups() == [] and arm.resources() == []
    assert not key_dir(home, "r-down").exists()
    provider.terminate("r-down", machines)  # again: not an error
    provider.terminate("r-down")
    assert provider.list_machines(run_id="r-down") == []


def test_list_machines_finds_the_vms_by_the_group_s_tag(provider: AzureProvider, arm: ArmFake) -> None:
    first = provider.launch(_request("r-list-a", count=2))
    second = provider.launch(_request("r-list-b"))
    provider.clients.resource.resource_groups.create_or_update("someone-else", {"location": REGION})  # untagged
    assert {m.id for m in provider.list_machines(run_id="r-list-a")} == {m.id for m in first}
    listed = provider.list_machines()
    assert {(m.run_id, m.id) for m in listed} == {(m.run_id, m.id) for m in [*first, *second]}
    assert {m.placement.instance_type for m in listed} == {"Standard_NC4as_T4_v3"}
    assert {m.access.host_key for m in listed if m.run_id == "r-list-b"} == {second[0].access.host_key}
    # Listed machines are reachable like launched ones: the same public and private addresses.
    assert {(m.id, m.access.host, m.private_address) for m in listed} == {
        (m.id, m.access.host, m.private_address) for m in [*first, *second]}
    assert all(m.access.host for m in listed)


def test_a_tagged_group_holding_no_vm_is_listed_as_one_machine_so_down_all_deletes_it(
    provider: AzureProvider, arm: ArmFake
) -> None:
    arm.fail("virtualMachines", "SkuNotAvailable")
    with pytest.raises(CapacityError):
        provider.launch(_request("r-empty"))
    [leftover] = provider.list_machines()
    assert (leftover.run_id, leftover.id) == ("r-empty", "orchestrate-r-empty")
    assert leftover.extra["resource_group"] == "orchestrate-r-empty"
    provider.terminate(leftover.run_id, [leftover])
    assert arm.groups() == [] and provider.list_machines() == []


def test_a_spot_launch_asks_for_spot_priority_evicted_by_delete_at_the_max_price(
    arm: ArmFake, home: Path
) -> None:
    provider = provider_for(arm, home)
    [machine] = provider.launch(_request("r-spot", placement=SPOT))
    [vm] = _of_type(arm, "orchestrate-r-spot", "Microsoft.Compute/virtualMachines")
    properties = vm["properties"]
    assert (properties["priority"], properties["evictionPolicy"]) == ("Spot", "Delete")
    assert properties["billingProfile"]["maxPrice"] == 0.3
    assert machine.placement.spot and provider.list_machines(run_id="r-spot")[0].placement.spot


def test_the_provider_prices_nothing_a_spot_machine_keeps_the_plan_s_price(
    provider: AzureProvider, arm: ArmFake
) -> None:
    # The run's launch step asks for the Spot price (orchestrator.catalog.spot, tests/integration/test_spot_quote.py).
    [spot] = provider.launch(_request("r-spot-price", placement=SPOT))
    [on_demand] = provider.launch(_request("r-ondemand"))
    [vm] = _of_type(arm, "orchestrate-r-ondemand", "Microsoft.Compute/virtualMachines")
    assert vm["properties"].get("priority") in (None, "Regular")
    assert (spot.placement.price_per_hour, on_demand.placement.price_per_hour) == (0.158, 0.526)
    assert spot.placement.price_source == on_demand.placement.price_source == "catalog"


def test_the_launch_s_critical_path_is_four_sequential_steps(provider: AzureProvider, arm: ArmFake) -> None:
    arm.latency_s = 1.0
    provider.launch(_request("r-path"))
    operations = {o["kind"]: o for o in arm.operations}
    assert len(arm.operations) == len(operations) == 5 and all(o["status"] == "Succeeded" for o in arm.operations)
    # 1: the group, created at once, before any operation.
    puts = [path for method, path in arm.requests if method == "PUT"]
    assert puts[0].lower().endswith("/resourcegroups/orchestrate-r-path")
    # 2: the network pieces, at once: each starts before any of them ends.
    network = [operations[kind] for kind in ("virtualNetworks", "networkSecurityGroups", "publicIPAddresses")]
    assert max(o["started"] for o in network) < min(o["ended"] for o in network)
    # 3: the NIC once they all ended; 4: the VM once the NIC ended.
    nic, vm = operations["networkInterfaces"], operations["virtualMachines"]
    assert nic["started"] >= max(o["ended"] for o in network)
    assert vm["started"] >= nic["ended"]


@pytest.mark.slow
def test_a_machine_presenting_another_host_key_is_refused(
    arm: ArmFake, home: Path, tmp_path: Path, sshd: Callable[..., Any], make_host_key: Callable[..., Path]
) -> None:
    from tests.integration.conftest import free_port

    port = free_port()
    provider = provider_for(arm, home, ssh_endpoint=f"{getpass.getuser()}@127.0.0.1:{port}")
    assert provider.ssh_endpoint == SSHEndpoint("127.0.0.1", port, getpass.getuser())
    [machine] = provider.launch(_request("r-impostor"))
    key = key_dir(home, "r-impostor") / KEY_FILE
    impostor = sshd(port=port, host_key_path=make_host_key(), authorized_key=key)  # the run's login works there
    assert impostor.host_key != machine.access.host_key
    assert (machine.access.host, machine.access.port) == ("127.0.0.1", port)
    with pytest.raises(HostKeyMismatch):
        transport_to(machine.access, tmp_path / "client-home", 10.0)
    provider.terminate("r-impostor", [machine])


def test_the_registry_makes_the_azure_provider_lazily(tmp_path: Path) -> None:
    from orchestrator.providers import get_provider

    provider = get_provider("azure", tmp_path / "home")
    assert isinstance(provider, AzureProvider) and provider.name == "azure"
