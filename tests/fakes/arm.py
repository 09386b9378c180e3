"""Azure Resource Manager on loopback, for the real Azure SDK clients (FACTS: no installable emulator exists).

:class:`ArmFake` is a small, stateful HTTP fake of the ARM REST API for what a run creates: resource groups
(tagged, listed by tag, deleted with everything in them), virtual networks with subnets, network security groups,
public IPs, NICs and Linux VMs. Creates and deletes are long-running operations that stay ``InProgress`` for
``latency_s`` and are polled the way Azure's are (``Azure-AsyncOperation`` for PUTs, ``Location`` for DELETEs).
Errors are injected with :meth:`ArmFake.fail`: refused at the PUT (``SkuNotAvailable``, quota, 429) or failed in
the operation (``AllocationFailed``), leaving the resource ``Failed`` as Azure does.

:func:`sdk_clients` builds the real SDK clients against it (bearer tokens over plain HTTP allowed).

This module is the control plane (routing, groups, resources, operations, faults); what it holds is in
:mod:`tests.fakes.arm_state`, what the network and compute providers add to a PUT in :mod:`tests.fakes.arm_providers`,
the HTTP server in :mod:`tests.fakes.arm_http`.
"""

from __future__ import annotations

import copy
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.arm_http import serve
from tests.fakes.arm_providers import ResourceProviders, instance_view, subnet
from tests.fakes.arm_state import FAILABLE, KINDS, NAMESPACES, Answer, ArmError, Fault, Held, Operation, set_state

if TYPE_CHECKING:
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

TAG_FILTER = re.compile(r"^\s*tagName eq '([^']*)'(?:\s+and\s+tagValue eq '([^']*)')?\s*$", re.IGNORECASE)


class ArmFake:
    """A stateful fake of the ARM REST API for one subscription, served on 127.0.0.1.

    Args:
        latency_s: how long every long-running operation stays InProgress (settable; read when one starts).
        subscription: the only subscription id it answers for.

    ``requests`` holds (method, path without query) of every request, in order; ``operations`` each long-running
    operation as ``{kind, name, method, started, ended, status}`` (monotonic seconds; ``ended`` None until done).
    """

    def __init__(self, *, latency_s: float = 0.0, subscription: str = "00000000-0000-0000-0000-000000000000") -> None:
        self.latency_s = latency_s
        self.subscription = subscription
        self.url = ""
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.RLock()  # re-entrant: a fault's `when` may read the fake
        self._groups: dict[str, dict[str, Any]] = {}
        self._deleting: dict[str, str] = {}  # group → id of its delete operation
        self._resources: dict[str, Held] = {}  # lower-case id → resource
        self._operations: dict[str, Operation] = {}
        self._faults: list[Fault] = []
        self._providers = ResourceProviders(self._resources)
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> ArmFake:
        """Binds 127.0.0.1 on a free port and serves in a daemon thread; ``url`` then says where."""
        # Looked up per request, not bound now: a test may replace ``handle`` on a running fake (the fault matrix's
        # throttling storm wraps it).
        self._server = serve(lambda method, target, raw: self.handle(method, target, raw))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        """Stops serving and closes the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def operations(self) -> list[dict[str, Any]]:
        """Every long-running operation so far, in the order they started."""
        with self._lock:
            self._settle()
            return [operation.view() for operation in self._operations.values()]

    def groups(self) -> list[dict[str, Any]]:
        """The resource groups held now, as GET returns them (those being deleted included)."""
        with self._lock:
            self._settle()
            return copy.deepcopy(list(self._groups.values()))

    def resources(self, group: str | None = None) -> list[dict[str, Any]]:
        """Every resource held now, as GET returns it; only those of ``group`` (any case) when given."""
        with self._lock:
            self._settle()
            return [copy.deepcopy(held.body) for held in self._resources.values()
                    if group is None or held.group == group.lower()]

    def custom_data(self, vm_name: str, *, group: str | None = None) -> str | None:
        """The decoded customData (cloud-init) the VM named ``vm_name`` was created with, or None."""
        with self._lock:
            for held in self._resources.values():
                if (held.kind == "virtualMachines" and held.body["name"].lower() == vm_name.lower()
                        and (group is None or held.group == group.lower())):
                    return held.custom_data
        return None

    def fail(self, kind: str, code: str, *, status: int = 409, message: str | None = None,
             in_operation: bool = False, times: int | None = None,
             when: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Makes PUTs of resources of ``kind`` fail with the ARM error ``code``.

        Args:
            kind: "resourceGroups", "virtualNetworks", "networkSecurityGroups", "publicIPAddresses",
                "networkInterfaces" or "virtualMachines".
            code: the error code, e.g. "SkuNotAvailable", "OperationNotAllowed", "AllocationFailed".
            status: the PUT's HTTP status when refused (429 also sends ``Retry-After: 1``).
            message: the error message; a default names the code and the kind.
            in_operation: accept the PUT, then end its operation Failed and leave the resource Failed.
            times: how many matching PUTs fail; None: all of them.
            when: called with the PUT's body (location included); only PUTs it accepts fail.
        """
        canonical = {k.lower(): k for k in FAILABLE}.get(kind.lower())
        if canonical is None:
            raise ValueError(f"fail() knows the kinds {', '.join(FAILABLE)}. Received: kind={kind!r}")
        if times is not None and times < 1:
            raise ValueError(f"times counts the PUTs that fail: at least 1, or None for all. Received: times={times}")
        if in_operation and canonical == "resourceGroups":
            raise ValueError(f"Resource groups are created at once, no operation to fail. Received: kind={kind!r}")
        with self._lock:
            self._faults.append(Fault(canonical, code, status, message or f"{code} (injected for {canonical})",
                                      in_operation, times, when))

    # The HTTP side. Everything below runs under the lock, via handle().

    def handle(self, method: str, target: str, raw: bytes) -> Answer:
        """Answers one request: (status, headers, JSON body or None)."""
        parts = urlsplit(target)
        query = {k.lower(): v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            self.requests.append((method, parts.path))
            self._settle()
            try:
                if "api-version" not in query:
                    raise ArmError(400, "MissingApiVersionParameter",
                                   "The api-version query parameter (?api-version=) is required for all requests.")
                return self._route(method, [unquote(s) for s in parts.path.strip("/").split("/")], query, raw)
            except ArmError as error:
                return error.status, error.headers, {"error": {"code": error.code, "message": error.message}}

    def _route(self, method: str, path: list[str], query: dict[str, str],
               raw: bytes) -> Answer:
        low = [s.lower() for s in path]
        if len(low) < 3 or low[0] != "subscriptions":
            raise ArmError(404, "NotFound", f"No route for {method} /{'/'.join(path)}")
        if low[1] != self.subscription.lower():
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{path[1]}' could not be found.")
        rest, names = low[2:], path[2:]
        if rest[0] == "operationresults" and len(rest) == 2 and method == "GET":
            return self._operation(rest[1], by_location=True)
        if (rest[0] == "providers" and len(rest) == 6 and rest[2] == "locations" and method == "GET"
                and rest[4] in ("operations", "operationresults")):
            return self._operation(rest[5], by_location=rest[4] == "operationresults")
        if rest[0] == "providers" and len(rest) == 3 and method == "GET":
            return 200, {}, {"value": self._listing(self._kind(rest[1], rest[2]), None, None)}
        if rest[0] != "resourcegroups":
            raise ArmError(404, "NotFound", f"No route for {method} /{'/'.join(path)}")
        if len(rest) == 1 and method == "GET":
            return 200, {}, {"value": [copy.deepcopy(g) for g in self._groups.values() if self._matches(g, query)]}
        if len(rest) == 2:
            return self._group(method, names[1], raw)
        group = self._group_of(names[1])
        if len(rest) == 3 and rest[2] == "resources" and method == "GET":
            return 200, {}, {"value": self._listing(None, group, query)}
        if len(rest) >= 5 and rest[2] == "providers":
            kind = self._kind(rest[3], rest[4])
            if len(rest) == 5 and method == "GET":
                return 200, {}, {"value": self._listing(kind, group, query)}
            if len(rest) == 6:
                return self._resource(method, kind, group, names[5], query, raw)
            if len(rest) == 7 and rest[6] == "instanceview" and kind == "virtualMachines" and method == "GET":
                return 200, {}, self._instance_view(self._held(kind, group, names[5]))
            if len(rest) == 8 and rest[6] == "subnets" and kind == "virtualNetworks" and method == "GET":
                return 200, {}, subnet(self._held(kind, group, names[5]).body, names[7])
        raise ArmError(404, "NotFound", f"No route for {method} /{'/'.join(path)}")

    @staticmethod
    def _kind(namespace: str, kind: str) -> str:
        if f"{namespace}/{kind}" not in KINDS:
            raise ArmError(404, "InvalidResourceType", f"The resource type '{namespace}/{kind}' could not be found.")
        return KINDS[f"{namespace}/{kind}"][1]

    @staticmethod
    def _matches(body: dict[str, Any], query: dict[str, str]) -> bool:
        text = query.get("$filter")
        if not text:
            return True
        match = TAG_FILTER.match(text)
        if match is None:
            raise ArmError(400, "InvalidFilterInQueryString", f"Only tag filters are faked. Received: {text!r}")
        tags = {k.lower(): v for k, v in (body.get("tags") or {}).items()}
        name, value = match.group(1).lower(), match.group(2)
        return name in tags and (value is None or tags[name] == value)

    def _listing(self, kind: str | None, group: str | None, query: dict[str, str] | None) -> list[dict[str, Any]]:
        return [self._view(held, {}) for held in self._resources.values()
                if (kind is None or held.kind == kind) and (group is None or held.group == group)
                and (query is None or self._matches(held.body, query))]

    def _group(self, method: str, name: str, raw: bytes) -> Answer:
        key = name.lower()
        held = self._groups.get(key)
        if method == "PUT":
            body = self._body(raw)
            if key in self._deleting:
                raise ArmError(409, "ResourceGroupBeingDeleted",
                               f"The resource group '{name}' is in deprovisioning state and cannot perform this "
                               "operation.")
            self._inject("resourceGroups", body)
            if held is not None and held["location"] != body["location"].lower().replace(" ", ""):
                raise ArmError(409, "InvalidResourceGroupLocation",
                               f"Resource group '{name}' already exists in location '{held['location']}'.")
            name = name if held is None else held["name"]  # Azure keeps the case it was created with
            group = {"id": f"/subscriptions/{self.subscription}/resourceGroups/{name}",
                     "name": name, "type": "Microsoft.Resources/resourceGroups",
                     "location": body["location"].lower().replace(" ", ""),
                     "properties": {"provisioningState": "Succeeded"}}
            if body.get("tags"):
                group["tags"] = dict(body["tags"])
            self._groups[key] = group
            return (201 if held is None else 200), {}, copy.deepcopy(group)
        if held is None:
            if method == "HEAD":
                return 404, {}, None
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
        if method == "HEAD":
            return 204, {}, None
        if method == "GET":
            return 200, {}, copy.deepcopy(held)
        if method == "PATCH":
            tags = self._body(raw, location=False).get("tags")
            if tags is not None:
                held["tags"] = dict(tags)
            return 200, {}, copy.deepcopy(held)
        if method == "DELETE":
            if key not in self._deleting:
                held["properties"]["provisioningState"] = "Deleting"
                self._deleting[key] = self._start("resourceGroups", held["name"], "DELETE", key, held["location"]).id
            operation = self._operations[self._deleting[key]]
            return 202, {"Location": self._operation_url(operation, "operationresults"),
                         **self._retry_after(operation.id)}, None
        raise ArmError(405, "MethodNotAllowed", f"{method} is not faked on resource groups.")

    def _group_of(self, name: str) -> str:
        if name.lower() not in self._groups:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
        return name.lower()

    def _held(self, kind: str, group: str, name: str) -> Held:
        held = self._resources.get(self._key(kind, group, name))
        if held is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource '{NAMESPACES[kind]}/{kind}/{name}' under "
                                                    f"resource group '{self._groups[group]['name']}' was not found.")
        return held

    def _key(self, kind: str, group: str, name: str) -> str:
        path = f"/subscriptions/{self.subscription}/resourcegroups/{group}/providers/{NAMESPACES[kind]}/{kind}/{name}"
        return path.lower()

    def _resource(self, method: str, kind: str, group: str, name: str, query: dict[str, str],
                  raw: bytes) -> Answer:
        key = self._key(kind, group, name)
        if method == "GET":
            return 200, {}, self._view(self._held(kind, group, name), query)
        if method == "DELETE":
            held = self._resources.get(key)
            if held is None:
                return 204, {}, None
            operation = self._start(kind, held.body["name"], "DELETE", key, held.body["location"])
            held.operation = operation.id
            set_state(held.body, "Deleting")
            return 202, {"Location": self._operation_url(operation, "operationresults"),
                         **self._retry_after(operation.id)}, None
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not faked on {kind}.")
        if group in self._deleting:
            raise ArmError(409, "ResourceGroupBeingDeleted", f"The resource group '{self._groups[group]['name']}' "
                                                             "is in deprovisioning state and cannot perform this "
                                                             "operation.")
        body = self._body(raw)
        previous = self._resources.get(key)
        namespace = NAMESPACES[kind]
        resource: dict[str, Any] = {k: v for k, v in body.items() if k not in ("id", "name", "type", "properties")}
        resource.update({"id": f"/subscriptions/{self.subscription}/resourceGroups/{self._groups[group]['name']}"
                               f"/providers/{namespace}/{kind}/{name if previous is None else previous.body['name']}",
                         "name": name if previous is None else previous.body["name"], "type": f"{namespace}/{kind}",
                         "location": body["location"].lower().replace(" ", ""),
                         "properties": copy.deepcopy(body.get("properties") or {})})
        if namespace == "Microsoft.Network":
            resource["etag"] = f'W/"{uuid.uuid4()}"'
        custom_data = self._providers.complete(kind, resource, None if previous is None else previous.body)
        fault = self._inject(kind, body)
        operation = self._start(kind, resource["name"], "PUT", key, resource["location"])
        if fault is not None:
            operation.error = {"code": fault.code, "message": fault.message}
        set_state(resource, "Creating" if previous is None and kind == "virtualMachines" else "Updating")
        self._resources[key] = Held(kind, group, resource, operation.id,
                                    custom_data if kind == "virtualMachines" else None)
        headers = {"Azure-AsyncOperation": self._operation_url(operation, "operations"),
                   **self._retry_after(operation.id)}
        return (201 if previous is None else 200), headers, self._view(self._resources[key], {})

    def _inject(self, kind: str, body: dict[str, Any]) -> Fault | None:
        """The fault this PUT meets: raised when it refuses the PUT, returned when it fails the operation."""
        for fault in self._faults:
            if fault.kind != kind or (fault.when is not None and not fault.when(copy.deepcopy(body))):
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            if fault.in_operation:
                return fault
            raise ArmError(fault.status, fault.code, fault.message, {"Retry-After": "1"} if fault.status == 429 else {})
        return None

    @staticmethod
    def _body(raw: bytes, *, location: bool = True) -> dict[str, Any]:
        try:
            body = json.loads(raw or b"null")
        except ValueError as error:
            raise ArmError(400, "InvalidRequestContent", f"The request content was invalid: {error}") from error
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
        if location and not isinstance(body.get("location"), str):
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        return body

    def _view(self, held: Held, query: dict[str, str]) -> dict[str, Any]:
        body = copy.deepcopy(held.body)
        if held.kind == "virtualMachines" and "instanceview" in query.get("$expand", "").lower():
            body["properties"]["instanceView"] = self._instance_view(held)
        return body

    def _instance_view(self, held: Held) -> dict[str, Any]:
        return instance_view(held.body, self._operations[held.operation])

    # Long-running operations.

    def _start(self, kind: str, name: str, method: str, target: str, location: str) -> Operation:
        started = time.monotonic()
        operation = Operation(str(uuid.uuid4()), kind, name, method, target, started, started + self.latency_s,
                              location)
        self._operations[operation.id] = operation
        return operation

    def _operation_url(self, operation: Operation, endpoint: str) -> str:
        """Where Azure points a client to poll: a group delete's result, or the resource provider's operation."""
        if operation.kind == "resourceGroups":
            return f"{self.url}/subscriptions/{self.subscription}/operationresults/{operation.id}?api-version=fake"
        provider = f"{self.url}/subscriptions/{self.subscription}/providers/{NAMESPACES[operation.kind]}"
        return f"{provider}/locations/{operation.location}/{endpoint}/{operation.id}?api-version=fake"

    def _retry_after(self, operation_id: str) -> dict[str, str]:
        """Azure's polling hint: the whole seconds left, only when there is latency (so tests poll fast)."""
        operation = self._operations[operation_id]
        if operation.ended is not None or self.latency_s <= 0:
            return {}
        return {"Retry-After": str(max(1, math.ceil(operation.deadline - time.monotonic())))}

    def _operation(self, operation_id: str, *, by_location: bool) -> Answer:
        operation = self._operations.get(operation_id)
        if operation is None:
            raise ArmError(404, "NotFound", f"The operation '{operation_id}' was not found.")
        if by_location:
            if operation.ended is None:
                return 202, {"Location": self._operation_url(operation, "operationresults"),
                             **self._retry_after(operation_id)}, None
            return 200, {}, None
        status = operation.view()["status"]
        body: dict[str, Any] = {"name": operation.id, "status": status}
        if operation.error is not None and operation.ended is not None:
            body["error"] = dict(operation.error)
        return 200, self._retry_after(operation_id), body

    def _settle(self) -> None:
        """Brings every operation whose time has come to its end (``ended`` is when it was due, not when seen)."""
        now = time.monotonic()
        due = sorted((o for o in self._operations.values() if o.ended is None and o.deadline <= now),
                     key=lambda o: o.deadline)
        for operation in due:
            operation.ended = operation.deadline
            if operation.kind == "resourceGroups":
                self._groups.pop(operation.target, None)
                self._deleting.pop(operation.target, None)
                for key in [k for k, held in self._resources.items() if held.group == operation.target]:
                    del self._resources[key]
                continue
            held = self._resources.get(operation.target)
            if held is None or held.operation != operation.id:
                continue
            if operation.method == "DELETE":
                del self._resources[operation.target]
            else:
                set_state(held.body, "Failed" if operation.error else "Succeeded")


def sdk_clients(fake: ArmFake) -> tuple[ResourceManagementClient, NetworkManagementClient, ComputeManagementClient]:
    """The real resource, network and compute clients, pointed at ``fake`` as Orchestrate points them at a loopback
    Resource Manager (:func:`orchestrator.clouds.azure.clients`: a fixed token over plain HTTP, the SDK's retries on).

    Polling waits 0.05 s between polls unless the fake sends Retry-After.
    """
    from orchestrator.clouds.azure import AzureSettings, clients

    made = clients(AzureSettings(fake.subscription, fake.url, ""), polling_interval=0.05)
    return made.resource, made.network, made.compute
