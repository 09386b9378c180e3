"""The ARM fake, driven by the real Azure SDK clients: what a run creates, reads, lists and deletes, and the errors
Azure answers (refused PUTs, failed operations, throttling, a group being deleted)."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("azure.mgmt.compute")
pytest.importorskip("azure.mgmt.network")
pytest.importorskip("azure.mgmt.resource")

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError  # noqa: E402

from tests.fakes.arm import ArmFake, sdk_clients  # noqa: E402

LOCATION = "eastus"
TAGS = {"orchestrate-run": "run-1"}
CLOUD_INIT = "#cloud-config\nruncmd:\n  - echo hello\n"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake orchestrate"


@dataclass
class Clients:
    resource: Any
    network: Any
    compute: Any


@pytest.fixture
def fake() -> Iterator[ArmFake]:
    server = ArmFake().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clients(fake: ArmFake) -> Clients:
    return Clients(*sdk_clients(fake))


def code(error: HttpResponseError) -> str:
    """The ARM error code the SDK parsed from the answer."""
    assert error.error is not None, error
    return str(error.error.code)


def network_for(clients: Clients, group: str) -> dict[str, Any]:
    """Creates what a run's VM stands on (vnet + subnet, NSG, public IP, NIC); returns the SDK's results."""
    vnet = clients.network.virtual_networks.begin_create_or_update(group, "vnet", {
        "location": LOCATION, "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                                             "subnets": [{"name": "default",
                                                          "properties": {"addressPrefix": "10.0.0.0/24"}}]},
    }).result()
    nsg = clients.network.network_security_groups.begin_create_or_update(group, "nsg", {
        "location": LOCATION, "properties": {"securityRules": [{"name": "ssh", "properties": {
            "protocol": "Tcp", "sourceAddressPrefix": "203.0.113.7/32", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "22", "access": "Allow", "priority": 100,
            "direction": "Inbound"}}]},
    }).result()
    address = clients.network.public_ip_addresses.begin_create_or_update(group, "ip", {
        "location": LOCATION, "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"},
    }).result()
    nic = clients.network.network_interfaces.begin_create_or_update(group, "nic", {
        "location": LOCATION, "properties": {
            "networkSecurityGroup": {"id": nsg.id},
            "ipConfigurations": [{"name": "ipconfig1", "properties": {
                "subnet": {"id": vnet.subnets[0].id}, "publicIPAddress": {"id": address.id}}}]},
    }).result()
    return {"vnet": vnet, "nsg": nsg, "ip": address, "nic": nic}


def vm_body(nic_id: str, *, size: str = "Standard_NC4as_T4_v3", **properties: Any) -> dict[str, Any]:
    """A run's VM: Ubuntu, SSH key only, cloud-init as customData."""
    body: dict[str, Any] = {"location": LOCATION, "tags": TAGS, "properties": {
        "hardwareProfile": {"vmSize": size},
        "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts",
                                              "sku": "server", "version": "latest"},
                           "osDisk": {"createOption": "FromImage", "deleteOption": "Delete",
                                      "managedDisk": {"storageAccountType": "Premium_LRS"}}},
        "osProfile": {"computerName": "vm", "adminUsername": "azureuser",
                      "customData": base64.b64encode(CLOUD_INIT.encode()).decode(),
                      "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [
                          {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": SSH_KEY}]}}},
        "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]},
        **properties}}
    return body


def run_stack(clients: Clients, group: str = "rg-run-1") -> dict[str, Any]:
    clients.resource.resource_groups.create_or_update(group, {"location": LOCATION, "tags": TAGS})
    return network_for(clients, group)


def test_a_run_is_created_read_back_and_deleted_with_its_group(fake: ArmFake, clients: Clients) -> None:
    stack = run_stack(clients)
    vm = clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", vm_body(stack["nic"].id)).result()

    assert vm.provisioning_state == "Succeeded" and vm.vm_id
    assert vm.hardware_profile.vm_size == "Standard_NC4as_T4_v3"
    assert vm.os_profile.linux_configuration.disable_password_authentication is True
    nic = clients.network.network_interfaces.get("rg-run-1", "nic")
    assert nic.ip_configurations[0].private_ip_address == "10.0.0.4"
    assert nic.network_security_group.id == stack["nsg"].id
    address = clients.network.public_ip_addresses.get("rg-run-1", "ip")
    assert address.ip_address.startswith("20.") and address.public_ip_allocation_method == "Static"
    rule = clients.network.network_security_groups.get("rg-run-1", "nsg").security_rules[0]
    assert (rule.source_address_prefix, rule.destination_port_range, rule.provisioning_state) == (
        "203.0.113.7/32", "22", "Succeeded")
    view = clients.compute.virtual_machines.get("rg-run-1", "vm", expand="instanceView").instance_view
    assert [s.code for s in view.statuses] == ["ProvisioningState/succeeded", "PowerState/running"]
    assert clients.compute.virtual_machines.get("rg-run-1", "vm").instance_view is None
    assert [v.name for v in clients.compute.virtual_machines.list("rg-run-1")] == ["vm"]
    assert len(fake.resources("RG-RUN-1")) == 5

    clients.resource.resource_groups.begin_delete("rg-run-1").result()

    assert fake.groups() == [] and fake.resources() == []
    assert clients.resource.resource_groups.check_existence("rg-run-1") is False
    with pytest.raises(ResourceNotFoundError):
        clients.compute.virtual_machines.get("rg-run-1", "vm")


def test_each_nic_and_public_ip_gets_its_own_address(clients: Clients) -> None:
    first, second = run_stack(clients, "rg-a"), run_stack(clients, "rg-b")

    assert first["nic"].ip_configurations[0].private_ip_address == "10.0.0.4"
    assert second["nic"].ip_configurations[0].private_ip_address == "10.0.0.5"
    assert first["ip"].ip_address != second["ip"].ip_address


def test_groups_are_listed_by_tag(clients: Clients) -> None:
    groups = clients.resource.resource_groups
    groups.create_or_update("rg-mine", {"location": LOCATION, "tags": TAGS})
    groups.create_or_update("rg-other-run", {"location": LOCATION, "tags": {"orchestrate-run": "run-2"}})
    groups.create_or_update("rg-untagged", {"location": LOCATION})

    tagged = groups.list(filter="tagName eq 'orchestrate-run' and tagValue eq 'run-1'")
    assert [g.name for g in tagged] == ["rg-mine"]
    assert sorted(g.name for g in groups.list()) == ["rg-mine", "rg-other-run", "rg-untagged"]


def test_latency_keeps_a_vm_create_in_progress_and_is_recorded(fake: ArmFake, clients: Clients) -> None:
    stack = run_stack(clients)
    fake.latency_s = 0.5
    started = time.monotonic()
    poller = clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", vm_body(stack["nic"].id))
    assert fake.resources("rg-run-1")[-1]["properties"]["provisioningState"] == "Creating"

    assert poller.result().provisioning_state == "Succeeded"
    assert time.monotonic() - started >= 0.5
    create = [o for o in fake.operations if o["kind"] == "virtualMachines"]
    assert len(create) == 1 and create[0]["method"] == "PUT" and create[0]["status"] == "Succeeded"
    assert create[0]["ended"] - create[0]["started"] == pytest.approx(0.5)


def test_an_unavailable_size_refuses_the_put(fake: ArmFake, clients: Clients) -> None:
    stack = run_stack(clients)
    fake.fail("virtualMachines", "SkuNotAvailable",
              message="The requested size for resource is currently not available in location 'eastus'.")

    with pytest.raises(ResourceExistsError) as refused:
        clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", vm_body(stack["nic"].id))

    assert code(refused.value) == "SkuNotAvailable" and refused.value.status_code == 409
    assert [r["name"] for r in fake.resources("rg-run-1") if r["type"] == "Microsoft.Compute/virtualMachines"] == []


def test_an_allocation_failure_fails_the_operation_and_leaves_the_vm_failed(fake: ArmFake, clients: Clients) -> None:
    stack = run_stack(clients)
    fake.fail("virtualMachines", "AllocationFailed", in_operation=True, times=1)

    poller = clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", vm_body(stack["nic"].id))
    with pytest.raises(HttpResponseError) as failed:
        poller.result()

    assert code(failed.value) == "AllocationFailed"
    vm = clients.compute.virtual_machines.get("rg-run-1", "vm", expand="instanceView")
    assert vm.provisioning_state == "Failed"
    assert vm.instance_view.statuses[0].code == "ProvisioningState/failed/AllocationFailed"
    again = clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", vm_body(stack["nic"].id))
    assert again.result().provisioning_state == "Succeeded"


def test_a_quota_refusal_hits_only_the_sizes_it_names(fake: ArmFake, clients: Clients) -> None:
    stack = run_stack(clients)
    fake.fail("virtualMachines", "OperationNotAllowed",
              message="Operation could not be completed as it results in exceeding approved "
                      "standardNCASv3_T4Family Cores quota.",
              when=lambda body: body["properties"]["hardwareProfile"]["vmSize"].startswith("Standard_NC"))

    with pytest.raises(ResourceExistsError) as refused:
        clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", vm_body(stack["nic"].id))
    assert code(refused.value) == "OperationNotAllowed" and "Cores quota" in str(refused.value.message)

    vm = clients.compute.virtual_machines.begin_create_or_update(
        "rg-run-1", "vm", vm_body(stack["nic"].id, size="Standard_D2s_v5")).result()
    assert vm.provisioning_state == "Succeeded"


def test_a_throttled_put_is_retried_by_the_sdk(fake: ArmFake, clients: Clients) -> None:
    stack = run_stack(clients)
    fake.fail("virtualMachines", "TooManyRequests", status=429, times=1)

    vm = clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", vm_body(stack["nic"].id)).result()

    assert vm.provisioning_state == "Succeeded"
    puts = [path for method, path in fake.requests if method == "PUT" and path.endswith("/virtualMachines/vm")]
    assert len(puts) == 2


def test_nothing_can_be_put_into_a_group_being_deleted(fake: ArmFake, clients: Clients) -> None:
    stack = run_stack(clients)
    fake.latency_s = 0.3
    poller = clients.resource.resource_groups.begin_delete("rg-run-1")
    assert fake.groups()[0]["properties"]["provisioningState"] == "Deleting"

    with pytest.raises(ResourceExistsError) as refused:
        clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", vm_body(stack["nic"].id))
    assert code(refused.value) == "ResourceGroupBeingDeleted"
    with pytest.raises(ResourceExistsError) as again:
        clients.resource.resource_groups.create_or_update("rg-run-1", {"location": LOCATION})
    assert code(again.value) == "ResourceGroupBeingDeleted"

    poller.result()
    assert fake.groups() == []
    polls = [path for method, path in fake.requests if method == "GET" and "/operationresults/" in path]
    assert len(polls) >= 2 and all(path.startswith(f"/subscriptions/{fake.subscription}/operationresults/")
                                   for path in polls)
    assert clients.resource.resource_groups.create_or_update("rg-run-1", {"location": LOCATION}).name == "rg-run-1"


def test_custom_data_is_kept_for_the_test_but_never_returned(fake: ArmFake, clients: Clients) -> None:
    stack = run_stack(clients)
    body = vm_body(stack["nic"].id)
    body["properties"]["osProfile"]["adminPassword"] = "not-echoed-either"
    vm = clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", body).result()

    assert fake.custom_data("VM") == CLOUD_INIT
    assert vm.os_profile.custom_data is None and vm.os_profile.admin_password is None
    assert "customData" not in json.dumps(fake.resources()) and "not-echoed" not in json.dumps(fake.resources())


def test_spot_priority_and_zones_are_kept(clients: Clients) -> None:
    stack = run_stack(clients)
    body = vm_body(stack["nic"].id, priority="Spot", evictionPolicy="Delete", billingProfile={"maxPrice": 0.25})
    body["zones"] = ["2"]

    vm = clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", body).result()

    assert (vm.priority, vm.eviction_policy, vm.billing_profile.max_price, vm.zones) == ("Spot", "Delete", 0.25, ["2"])


def test_a_nic_on_a_missing_subnet_is_an_invalid_reference(clients: Clients) -> None:
    stack = run_stack(clients)
    missing = stack["vnet"].id + "/subnets/elsewhere"

    with pytest.raises(HttpResponseError) as refused:
        clients.network.network_interfaces.begin_create_or_update("rg-run-1", "nic2", {
            "location": LOCATION,
            "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": missing}}}]}})

    assert refused.value.status_code == 400 and code(refused.value) == "InvalidResourceReference"


def test_a_vm_needs_an_existing_nic_and_an_ssh_key(clients: Clients) -> None:
    stack = run_stack(clients)
    missing_nic = stack["nic"].id + "-gone"
    no_key = vm_body(stack["nic"].id)
    no_key["properties"]["osProfile"]["linuxConfiguration"] = {"disablePasswordAuthentication": False}

    for name, body in [("vm1", vm_body(missing_nic)), ("vm2", no_key)]:
        with pytest.raises(HttpResponseError) as refused:
            clients.compute.virtual_machines.begin_create_or_update("rg-run-1", name, body)
        assert refused.value.status_code == 400


def test_puts_need_an_existing_group(clients: Clients) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        clients.network.public_ip_addresses.begin_create_or_update("rg-nowhere", "ip", {"location": LOCATION})

    assert code(missing.value) == "ResourceGroupNotFound"


def test_a_single_resource_is_deleted_by_its_own_operation(fake: ArmFake, clients: Clients) -> None:
    stack = run_stack(clients)
    clients.compute.virtual_machines.begin_create_or_update("rg-run-1", "vm", vm_body(stack["nic"].id)).result()

    clients.compute.virtual_machines.begin_delete("rg-run-1", "vm").result()

    assert [r["name"] for r in fake.resources("rg-run-1")] == ["vnet", "nsg", "ip", "nic"]
    assert fake.operations[-1]["method"] == "DELETE" and fake.operations[-1]["ended"] is not None


def raw_get(fake: ArmFake, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(fake.url + path) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        assert error.headers["Content-Type"].startswith("application/json")
        return error.code, json.loads(error.read())


def test_unknown_routes_and_missing_api_versions_get_arm_errors(fake: ArmFake, clients: Clients) -> None:
    run_stack(clients)
    subscription = f"/subscriptions/{fake.subscription}"

    assert raw_get(fake, f"{subscription}/RESOURCEGROUPS/RG-RUN-1?api-version=x")[0] == 200
    assert raw_get(fake, f"{subscription}/resourcegroups/rg-run-1")[1]["error"]["code"] == "MissingApiVersionParameter"
    status, body = raw_get(fake, f"{subscription}/nowhere/at/all?api-version=x")
    assert status == 404 and body["error"]["code"] == "NotFound"
