"""What the ARM fake's resource providers (Microsoft.Network, Microsoft.Compute) add to a resource PUT to them, as
Azure does: ids of nested items, addresses handed out, a VM's disk and ids; the references they check (a NIC's subnet,
a VM's NICs); and the views only they answer (a VM's instance view, a subnet)."""

from __future__ import annotations

import base64
import binascii
import copy
import uuid
from typing import Any

from tests.fakes.arm_state import ArmError, Held, Operation, now


class ResourceProviders:
    """Completes the resources PUT to the fake, checking what they reference against ``resources`` (the fake's own,
    lower-case id → resource; read, never written)."""

    def __init__(self, resources: dict[str, Held]) -> None:
        self._resources = resources
        self._addresses = 0  # public IPs handed out
        self._private_addresses = 0  # NIC private IPs handed out

    def complete(self, kind: str, resource: dict[str, Any], previous: dict[str, Any] | None) -> str | None:
        """Fills in what Azure adds to a PUT of ``kind`` (``previous``: the body it replaces, if any); returns a VM's
        decoded customData (None for every other kind). Raises ArmError where Azure refuses the PUT."""
        if kind == "virtualNetworks":
            self._children(resource, "subnets")
        elif kind == "networkSecurityGroups":
            self._children(resource, "securityRules")
        elif kind == "publicIPAddresses":
            self._public_ip(resource, previous)
        elif kind == "networkInterfaces":
            self._network_interface(resource, previous)
        else:
            return self._virtual_machine(resource, previous)
        return None

    def _reference(self, resource_id: Any, what: str) -> Held:
        """The held resource ``resource_id`` names (a subnet id names its virtual network)."""
        text = str(resource_id or "").lower()
        base = text.split("/subnets/")[0] if "/subnets/" in text else text
        held = self._resources.get(base)
        if held is None or (base != text and not any(s.get("id", "").lower() == text
                                                     for s in held.body["properties"].get("subnets", []))):
            raise ArmError(400, "InvalidResourceReference",
                           f"Resource {resource_id} referenced by {what} was not found.")
        return held

    @staticmethod
    def _children(resource: dict[str, Any], collection: str) -> list[dict[str, Any]]:
        children: list[dict[str, Any]] = resource["properties"].setdefault(collection, [])
        for child in children:
            if not child.get("name"):
                raise ArmError(400, "InvalidRequestFormat", f"Every item of {collection} needs a name.")
            child["id"] = f"{resource['id']}/{collection}/{child['name']}"
            child["type"] = f"{resource['type']}/{collection}"
            child.setdefault("properties", {})
        return children

    def _public_ip(self, resource: dict[str, Any], previous: dict[str, Any] | None) -> None:
        properties = resource["properties"]
        properties.setdefault("publicIPAllocationMethod", "Static")
        properties.setdefault("publicIPAddressVersion", "IPv4")
        if previous is not None and "ipAddress" in previous["properties"]:
            properties["ipAddress"] = previous["properties"]["ipAddress"]
        else:
            self._addresses += 1
            n = self._addresses
            properties["ipAddress"] = f"20.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"

    def _network_interface(self, resource: dict[str, Any], previous: dict[str, Any] | None) -> None:
        configurations = self._children(resource, "ipConfigurations")
        if not configurations:
            raise ArmError(400, "InvalidRequestFormat", "A network interface needs at least one IP configuration.")
        if resource["properties"].get("networkSecurityGroup"):
            self._reference(resource["properties"]["networkSecurityGroup"].get("id"), resource["id"])
        old = {c["name"].lower(): c for c in (previous or {}).get("properties", {}).get("ipConfigurations", [])}
        for index, configuration in enumerate(configurations):
            properties = configuration["properties"]
            self._reference((properties.get("subnet") or {}).get("id"), configuration["id"])
            if properties.get("publicIPAddress"):
                self._reference(properties["publicIPAddress"].get("id"), configuration["id"])
            properties.setdefault("privateIPAllocationMethod", "Dynamic")
            properties.setdefault("primary", index == 0)
            kept = old.get(configuration["name"].lower(), {}).get("properties", {}).get("privateIPAddress")
            if kept is None:
                n = 4 + self._private_addresses
                self._private_addresses += 1
                kept = f"10.0.{n // 256 % 256}.{n % 256}"
            properties.setdefault("privateIPAddress", kept)

    def _virtual_machine(self, resource: dict[str, Any], previous: dict[str, Any] | None) -> str | None:
        properties = resource["properties"]
        interfaces = (properties.get("networkProfile") or {}).get("networkInterfaces") or []
        if not interfaces:
            raise ArmError(400, "InvalidParameter", "The VM needs at least one network interface.")
        for interface in interfaces:
            self._reference(interface.get("id"), resource["id"])
        profile = properties.setdefault("osProfile", {})
        linux = profile.get("linuxConfiguration") or {}
        keys = (linux.get("ssh") or {}).get("publicKeys") or []
        password = profile.pop("adminPassword", None)  # never returned, like customData
        if not keys and (linux.get("disablePasswordAuthentication") is True or not password):
            raise ArmError(400, "InvalidParameter", "Authentication using either SSH or by user name and password "
                                                    "must be enabled in Linux profile.")
        profile.setdefault("secrets", [])
        custom_data: str | None = None
        if "customData" in profile:
            try:
                custom_data = base64.b64decode(profile.pop("customData"), validate=True).decode()
            except (binascii.Error, ValueError) as error:
                raise ArmError(400, "InvalidParameter", "customData must be base64.") from error
        storage = properties.setdefault("storageProfile", {})
        disk = storage.setdefault("osDisk", {})
        disk.setdefault("osType", "Linux")
        disk.setdefault("createOption", "FromImage")
        disk.setdefault("name", f"{resource['name']}_OsDisk_1_{uuid.uuid4().hex}")
        storage.setdefault("dataDisks", [])
        properties["vmId"] = (previous or {}).get("properties", {}).get("vmId") or str(uuid.uuid4())
        properties["timeCreated"] = (previous or {}).get("properties", {}).get("timeCreated") or now()
        return custom_data


def instance_view(vm: dict[str, Any], operation: Operation) -> dict[str, Any]:
    """A VM's instance view: its provisioning state (and the error ``operation``, its latest, ended with), its power
    state."""
    state = vm["properties"]["provisioningState"]
    code = f"ProvisioningState/{state.lower()}" + (f"/{operation.error['code']}" if operation.error else "")
    statuses = [{"code": code, "level": "Error" if operation.error else "Info",
                 "displayStatus": f"Provisioning {state.lower()}", "time": now()}]
    power = {"Succeeded": "running", "Creating": "starting", "Updating": "running"}.get(state)
    if power:
        statuses.append({"code": f"PowerState/{power}", "level": "Info", "displayStatus": f"VM {power}"})
    return {"computerName": vm["properties"]["osProfile"].get("computerName"), "osName": "ubuntu",
            "statuses": statuses}


def subnet(vnet: dict[str, Any], name: str) -> dict[str, Any]:
    """The subnet ``name`` (any case) of a virtual network, as GET returns it."""
    for item in vnet["properties"].get("subnets", []):
        if item["name"].lower() == name.lower():
            return copy.deepcopy(item)
    raise ArmError(404, "NotFound", f"Resource {vnet['id']}/subnets/{name} not found.")
