"""Azure VMs as machines: one resource group per run, created fast, deleted in one call.

A launch makes, in the run's group ``orchestrate-<run-id>`` (tagged with the run id, owner and created-at): a
virtual network with one subnet, a network security group whose only inbound allow rule is TCP 22 from the run's
allowed CIDR, a static public IP and a NIC per VM, and the VMs themselves (the run's SSH public key, password login
off, the run's host key through cloud-init, Regular or Spot priority with eviction policy Delete). The pieces that
do not depend on each other are created at once, so the critical path is group → network pieces → NICs → VMs: four
sequential operations. Teardown is one resource-group delete, waited for.

A refusal for capacity (``SkuNotAvailable``, ``AllocationFailed`` inside the operation, …) is a
:class:`~orchestrator.errors.CapacityError`, a cores quota a :class:`~orchestrator.errors.QuotaError` naming the
family; which region or size to try next is the
lifecycle's business. Throttling (429 with ``Retry-After``) is azure-core's retry policy's.

Testing knob: ``ssh_endpoint`` (or ``ORCHESTRATE_AZURE_SSH_ENDPOINT=[user@]127.0.0.1:PORT``) gives every machine that
SSH address instead of its public IP; the pinned host key stays the run's own.
"""

from __future__ import annotations

import base64
import getpass
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

from orchestrator.catalog.images import AZURE_UBUNTU_HPC
from orchestrator.catalog.offers import load_offers
from orchestrator.catalog.placement import retirement_warnings
from orchestrator.clouds import azure
from orchestrator.errors import AuthError, CapacityError, ProviderError, QuotaError, SpecError
from orchestrator.machine import Access, Capability, Environment, LaunchRequest, Machine, MachineState, Placement
from orchestrator.providers.cloudinit import user_data
from orchestrator.providers.keys import (
    KEY_FILE,
    SSHEndpoint,
    checked_cidr,
    client_key,
    host_key,
    key_dir,
    remove_client_key,
)

RUN_TAG = "orchestrate-run-id"
OWNER_TAG = "orchestrate-owner"
CREATED_TAG = "orchestrate-created-at"
HOST_KEY_TAG = "orchestrate-host-key"  # the pinned public host key, so a listed VM is reachable safely too
ATTEMPT_TAG = "orchestrate-attempt"

LOGIN_USER = "azureuser"
DEFAULT_IMAGE = AZURE_UBUNTU_HPC  # the plan names it; NVIDIA driver and CUDA for the N-series sizes
POLL_S = 2.0  # between polls of a long-running operation when Azure sends no Retry-After
OPERATION_TIMEOUT_S = 900.0  # a create or the group's delete
GROUP_GONE_TIMEOUT_S = 600.0  # waiting for a group of the same name that is still being deleted
ENDPOINT_ENV = "ORCHESTRATE_AZURE_SSH_ENDPOINT"
SSH_PORT = 22



def group_name(run_id: str) -> str:
    """The run's resource group."""
    return f"orchestrate-{run_id}"


def image_reference(image: str) -> dict[str, str]:
    """The ARM image reference of ``publisher:offer:sku:version`` or of an image's resource id.

    Raises:
        SpecError: it is neither.
    """
    if image.startswith("/subscriptions/"):
        return {"id": image}
    parts = image.split(":")
    if len(parts) != 4 or not all(parts):
        raise SpecError("--image", image, "publisher:offer:sku:version (e.g. " + DEFAULT_IMAGE
                        + ") or an image's resource id (/subscriptions/…)")
    publisher, offer, sku, version = parts
    return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}


def _environment(image: str) -> Environment:
    """What the payload runs with on the image: the Ubuntu HPC image has the driver and Python but no Keras, so the
    payload gets a venv of its own; any other image is taken to have Keras for ``python3``."""
    prepare: Literal["image", "venv"] = "venv" if image.lower().startswith("microsoft-dsvm:ubuntu-hpc:") else "image"
    return Environment(prepare=prepare, python="python3", workdir="orchestrate")


class AzureProvider:
    """Azure VMs, one run's in one resource group.

    Args:
        home: the Orchestrate home; the run's private key lives in ``home/keys/<run-id>/``, the settings in
            ``home/azure.yaml``.
        settings: which subscription and cloud (default: :func:`orchestrator.clouds.azure.settings`).
        ssh_endpoint: ``[user@]host:port`` where every machine's SSH is reached (default:
            ``$ORCHESTRATE_AZURE_SSH_ENDPOINT``).
        clients: ready-made SDK clients (default: made from the settings on first use).
        polling_interval: seconds between polls when Azure sends no ``Retry-After``.
    """

    name = "azure"
    capabilities: frozenset[Capability] = frozenset({Capability.SPOT, Capability.MULTI_NODE})

    def __init__(
        self,
        home: Path,
        settings: azure.AzureSettings | None = None,
        *,
        ssh_endpoint: str | None = None,
        clients: azure.Clients | None = None,
        polling_interval: float = POLL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        **_: object,
    ) -> None:
        self.home = home
        self._settings = settings
        self.ssh_endpoint = SSHEndpoint.setting(ssh_endpoint, ENDPOINT_ENV)
        self._clients = clients
        self.polling_interval = polling_interval
        self.clock = clock
        self.sleep = sleep

    @property
    def settings(self) -> azure.AzureSettings:
        """Which subscription and cloud (read on first use)."""
        if self._settings is None:
            self._settings = azure.settings(self.home)
        return self._settings

    @property
    def clients(self) -> azure.Clients:
        """The SDK clients (made on first use)."""
        if self._clients is None:
            self._clients = azure.clients(self.settings, polling_interval=self.polling_interval)
        return self._clients

    def _what(self, region: str | None = None) -> str:
        return f"Azure Resource Manager ({region})" if region else "Azure Resource Manager"

    # -- launch --------------------------------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> list[Machine]:
        """Launches ``request.count`` VMs of one size in the placement's region, in the run's resource group.

        Returns once every VM's creation has succeeded (SSH may still be starting: the connect step waits for it).

        Raises:
            SpecError: no allowed CIDR (or one open to everyone), no region, or an image that is not an Azure one.
            CapacityError: Azure has no room for the size there (``SkuNotAvailable``, ``AllocationFailed``, …).
            QuotaError: a cores quota refuses it (the family is named).
            AuthError: no credential worked, or the subscription refused it.
            ProviderError: Azure refused otherwise, or an operation did not end in time.
        """
        placement = request.placement
        cidr = checked_cidr(request.allowed_cidr)
        if not placement.region:
            raise SpecError("region", None, "an Azure region, e.g. eastus")
        if request.count < 1:
            raise SpecError("count", request.count, "1 or more machines")
        image = request.image or DEFAULT_IMAGE
        reference = image_reference(image)
        region, run_id = placement.region, request.run_id
        group = group_name(run_id)
        tags = {**{k.replace(":", "-"): v for k, v in request.tags.items()}, RUN_TAG: run_id, OWNER_TAG: _owner(),
                CREATED_TAG: datetime.now(UTC).isoformat(timespec="seconds"), ATTEMPT_TAG: str(request.attempt)}
        try:
            return self._launch(request, region, group, tags, cidr, reference, image)
        except (CapacityError, ProviderError) as error:
            note = None if isinstance(error, AuthError | QuotaError) else _retirement(self.home, placement)
            if note is None:
                raise
            raise type(error)(f"{error}; {note}", hint=error.hint) from None

    def _launch(self, request: LaunchRequest, region: str, group: str, tags: dict[str, str], cidr: str,
                reference: dict[str, str], image: str) -> list[Machine]:
        placement, run_id = request.placement, request.run_id
        key = client_key(self.home, run_id)
        host = host_key()
        c = self.clients
        net, vm_models = _models()
        with azure.translating(what=self._what(region)):
            self._create_group(group, region, tags)
            # A later attempt's VMs (a replacement for an evicted one) are named apart from the first's.
            prefix = run_id if request.attempt <= 1 else f"{run_id}-a{request.attempt}"
            names = [f"{prefix}-{i}" for i in range(request.count)]
            # 2: the network pieces, at once.
            vnet, nsg, *addresses = self._at_once(region, [
                ("virtual network create", lambda: c.network.virtual_networks.begin_create_or_update(
                    group, "vnet", net.VirtualNetwork(
                        location=region, tags=tags, address_space=net.AddressSpace(address_prefixes=["10.0.0.0/16"]),
                        subnets=[net.Subnet(name="default", address_prefix="10.0.0.0/24")]))),
                ("network security group create", lambda: c.network.network_security_groups.begin_create_or_update(
                    group, "nsg", net.NetworkSecurityGroup(location=region, tags=tags, security_rules=[
                        net.SecurityRule(
                            name="ssh-from-caller", priority=100, direction="Inbound", access="Allow", protocol="Tcp",
                            source_address_prefix=cidr, source_port_range="*", destination_address_prefix="*",
                            destination_port_range=str(SSH_PORT))]))),
                *[("public IP address create", partial(
                    c.network.public_ip_addresses.begin_create_or_update, group, f"{name}-ip", net.PublicIPAddress(
                        location=region, tags=tags, sku=net.PublicIPAddressSku(name="Standard"),
                        public_ip_allocation_method="Static", public_ip_address_version="IPv4")))
                  for name in names]])
            # 3: a NIC per VM, at once.
            nics = self._at_once(region, [("network interface create", partial(
                c.network.network_interfaces.begin_create_or_update, group, f"{name}-nic", net.NetworkInterface(
                    location=region, tags=tags, network_security_group=net.NetworkSecurityGroup(id=nsg.id),
                    ip_configurations=[net.NetworkInterfaceIPConfiguration(
                        name="ipconfig1", subnet=net.Subnet(id=vnet.subnets[0].id),
                        public_ip_address=net.PublicIPAddress(id=address.id))])))
                for name, address in zip(names, addresses, strict=True)])
            # 4: the VMs, at once.
            vm_tags = {**tags, HOST_KEY_TAG: host.public}
            custom_data = base64.b64encode(user_data(
                host, request.user_data, user=LOGIN_USER, workdir="orchestrate").encode()).decode()
            vms = self._at_once(region, [("VM create", partial(
                c.compute.virtual_machines.begin_create_or_update, group, name, _vm_body(
                    vm_models, name, nic.id, region, placement, reference, key.public, custom_data, vm_tags)))
                for name, nic in zip(names, nics, strict=True)])
        machines = []
        for vm, address, nic in zip(vms, addresses, nics, strict=True):
            private = nic.ip_configurations[0].private_ip_address if nic.ip_configurations else None
            machines.append(self._machine(vm.name, group, region, placement, host.public, image, vm.tags or {},
                                          public=address.ip_address, private=private, state=MachineState.RUNNING))
        return machines

    def _create_group(self, group: str, region: str, tags: dict[str, str]) -> None:
        """Creates (or updates) the run's group; waits out a group of that name still being deleted."""
        deadline = self.clock() + GROUP_GONE_TIMEOUT_S
        while True:
            try:
                self.clients.resource.resource_groups.create_or_update(group, {"location": region, "tags": tags})
                return
            except Exception as error:  # noqa: BLE001 - one code is waited out; the rest are translated above
                if azure.error_code(error) != "ResourceGroupBeingDeleted" or self.clock() >= deadline:
                    raise
                self.sleep(self.polling_interval)

    def _done(self, poller: Any, what: str, operation: str) -> Any:
        """The result of one long-running operation, bounded in time; a failed one says which operation it was."""
        with azure.translating(what=what, operation=operation):
            result = poller.result(timeout=OPERATION_TIMEOUT_S)
        if not poller.done():
            raise ProviderError(f"{what}: the {operation} operation did not end in {OPERATION_TIMEOUT_S:g} s",
                                hint="check the Azure portal; `orchestrate down RUN` deletes the run's group")
        return result

    def _at_once(self, region: str, starts: Sequence[tuple[str, Callable[[], Any]]]) -> list[Any]:
        """Starts every operation (each named, e.g. "VM create"), then waits for every one that started, and only
        then raises the first refusal (so no resource is still being made when the lifecycle's sweep deletes the
        group); else their results."""
        pollers: list[tuple[str, Any]] = []
        errors: list[BaseException] = []
        for operation, start in starts:
            try:
                pollers.append((operation, start()))
            except Exception as error:  # noqa: BLE001 - raised below, once the others have ended
                errors.append(error)
        return self._wait_all(pollers, errors, what=self._what(region))

    def _wait_all(self, pollers: Sequence[tuple[str, Any]], errors: Sequence[BaseException] = (), *,
                  what: str) -> list[Any]:
        """Waits for every (operation, poller); raises the first of ``errors`` and theirs, else their results."""
        with ThreadPoolExecutor(max_workers=max(1, len(pollers)), thread_name_prefix="azure") as pool:
            futures = [pool.submit(self._done, poller, what, operation) for operation, poller in pollers]
        failed = [*errors, *(error for error in (f.exception() for f in futures) if error is not None)]
        if failed:
            raise failed[0]
        return [f.result() for f in futures]

    # -- list and terminate --------------------------------------------------------------------------------------

    def _groups(self, run_id: str | None) -> list[Any]:
        """The resource groups Orchestrate made (one run's, or every run's), by tag."""
        query = f"tagName eq '{RUN_TAG}'" + (f" and tagValue eq '{run_id}'" if run_id is not None else "")
        with azure.translating(what=self._what()):
            return list(self.clients.resource.resource_groups.list(filter=query))

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        """Lists the VMs of Orchestrate's resource groups (one run's, or all); a group holding no VM is listed as
        a machine of its own name, so that `orchestrate down --all` deletes it too."""
        machines = []
        for group in self._groups(run_id):
            tags = dict(group.tags or {})
            with azure.translating(what=self._what(group.location)):
                vms = list(self.clients.compute.virtual_machines.list(group.name))
                # Their addresses, by the names launch gives them (so `down --all` can reach an orphan's payload).
                public = {ip.name: ip.ip_address for ip in self.clients.network.public_ip_addresses.list(group.name)
                          } if vms else {}
                private = {nic.name: nic.ip_configurations[0].private_ip_address for nic in
                           self.clients.network.network_interfaces.list(group.name) if nic.ip_configurations
                           } if vms else {}
            for vm in vms:
                size = vm.hardware_profile.vm_size if vm.hardware_profile else ""
                placement = Placement(provider=self.name, instance_type=size or "", spot=vm.priority == "Spot",
                                      billing_rule="per_minute_full")
                machines.append(self._machine(vm.name, group.name, vm.location, placement, None, None, vm.tags or {},
                                              public=public.get(f"{vm.name}-ip"),
                                              private=private.get(f"{vm.name}-nic"),
                                              state=_state(vm.provisioning_state)))
            if not vms:
                placement = Placement(provider=self.name, instance_type="resource group",
                                      billing_rule="per_minute_full")
                machines.append(self._machine(group.name, group.name, group.location, placement, None, None, tags,
                                              state=MachineState.UNKNOWN))
        return sorted(machines, key=lambda m: (m.run_id, m.id))

    def terminate(self, run_id: str, machines: Sequence[Machine] = ()) -> None:
        """Deletes the run's resource groups (by tag, plus those of the given machines) and waits until they are
        gone, then removes the run's local key; idempotent.

        Raises:
            ProviderError: a group was not deleted in time, or Azure refused.
        """
        from azure.core.exceptions import ResourceNotFoundError

        names = {g.name for g in self._groups(run_id)} | {
            str(m.extra["resource_group"]) for m in machines if m.provider == self.name and m.extra.get(
                "resource_group")}
        pollers = []
        with azure.translating(what=self._what()):
            for name in sorted(names):
                try:
                    pollers.append(("resource group delete", self.clients.resource.resource_groups.begin_delete(name)))
                except ResourceNotFoundError:
                    continue  # already gone
            self._wait_all(pollers, what=self._what())
        remove_client_key(self.home, run_id)

    # -- machines ------------------------------------------------------------------------------------------------

    def _machine(self, name: str, group: str, region: str | None, placement: Placement | None,
                 host_key_line: str | None, image: str | None, tags: dict[str, str], *, public: str | None = None,
                 private: str | None = None, state: MachineState = MachineState.UNKNOWN) -> Machine:
        run_id = tags.get(RUN_TAG, "")
        base = placement or Placement(provider=self.name, instance_type="", billing_rule="per_minute_full")
        placement = replace(base, region=region or base.region)
        host, port, user = public or "", SSH_PORT, LOGIN_USER
        if self.ssh_endpoint is not None:
            host, port, user = self.ssh_endpoint.reach(LOGIN_USER)
        access = Access(via="ssh", host=host, port=port, user=user,
                        key_path=str(key_dir(self.home, run_id) / KEY_FILE),
                        host_key=host_key_line or tags.get(HOST_KEY_TAG))
        created = tags.get(CREATED_TAG)
        return Machine(
            run_id=run_id, id=name, provider=self.name, placement=placement, access=access,
            environment=_environment(image or ""), run_dir=f"orchestrate/runs/{run_id}",
            launched_at=datetime.fromisoformat(created) if created else datetime.now(UTC), state=state,
            private_address=private, extra={"resource_group": group, "image": image or ""},
        )


def _retirement(home: Path, placement: Placement) -> str | None:
    """What the catalog says of a retired size (its date and successors), to put beside Azure's refusal of it."""
    offers = [o for o in load_offers(home=home) if o.provider == placement.provider]
    retired = [o for o in offers if o.instance_type == placement.instance_type and o.retired]
    if not retired:
        return None
    notes = retirement_warnings(retired, [o for o in offers if not o.retired])
    return notes[0] if notes else None


def _models() -> tuple[Any, Any]:
    """The network and compute model modules (imported on first use: the SDK is slow to import)."""
    import azure.mgmt.compute.models as compute
    import azure.mgmt.network.models as network

    return network, compute


def _vm_body(models: Any, name: str, nic_id: str, region: str, placement: Placement, reference: dict[str, str],
             public_key: str, custom_data: str, tags: dict[str, str]) -> Any:
    """The VM: its size and image, the run's SSH key (password login off), cloud-init, its NIC; Spot if asked."""
    spot: dict[str, Any] = {}
    if placement.spot:
        spot = {"priority": "Spot", "eviction_policy": "Delete", "billing_profile": models.BillingProfile(
            max_price=placement.max_price if placement.max_price is not None else -1)}
    return models.VirtualMachine(
        location=region, tags=tags, zones=[placement.zone] if placement.zone else None,
        hardware_profile=models.HardwareProfile(vm_size=placement.instance_type),
        storage_profile=models.StorageProfile(image_reference=models.ImageReference(**reference), os_disk=models.OSDisk(
            create_option="FromImage", delete_option="Delete",
            managed_disk=models.ManagedDiskParameters(storage_account_type="Premium_LRS"))),
        os_profile=models.OSProfile(
            computer_name=name, admin_username=LOGIN_USER, custom_data=custom_data,
            linux_configuration=models.LinuxConfiguration(
                disable_password_authentication=True, ssh=models.SshConfiguration(public_keys=[models.SshPublicKey(
                    path=f"/home/{LOGIN_USER}/.ssh/authorized_keys", key_data=public_key)]))),
        network_profile=models.NetworkProfile(network_interfaces=[models.NetworkInterfaceReference(
            id=nic_id, primary=True, delete_option="Delete")]),
        **spot,
    )


def _state(provisioning: str | None) -> MachineState:
    return {"Succeeded": MachineState.RUNNING, "Creating": MachineState.PENDING, "Updating": MachineState.PENDING,
            "Deleting": MachineState.TERMINATED, "Failed": MachineState.UNKNOWN}.get(provisioning or "",
                                                                                   MachineState.UNKNOWN)


def _owner() -> str:
    """The local user, for the owner tag."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

