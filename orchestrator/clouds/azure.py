"""Azure through the management SDK: which cloud and subscription, the clients, and the one map of SDK errors to ours.

The SDK packages are imported inside the functions, so importing this module stays cheap and ``orchestrate --help``
never loads them (DESIGN §2; FACTS: 0.5–0.7 s each). Every Azure failure becomes one :mod:`orchestrator.errors`
family here, once (DESIGN §6): :class:`AuthError` never fails over; :class:`CapacityError` (``SkuNotAvailable``,
``AllocationFailed``, ``ZonalAllocationFailed``, …) lets the lifecycle try the next placement; :class:`QuotaError`
(a family's cores quota) stops and names the quota.

Where: ``$ORCHESTRATE_HOME/azure.yaml`` (``subscription_id``, ``cloud``) with the environment over it
(``AZURE_SUBSCRIPTION_ID``, ``ORCHESTRATE_AZURE_CLOUD``). ``cloud`` is AzureCloud (the default), AzureUSGovernment,
AzureChinaCloud, or the https URL of another Resource Manager (Azure Stack, a sovereign cloud) — or, for testing only,
``http://127.0.0.1:PORT``: plain HTTP and a static token are accepted for a loopback endpoint and nothing else
(README, "Testing without an Azure account").
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from orchestrator.errors import AuthError, CapacityError, OrchestrateError, ProviderError, QuotaError, SpecError

HTTP_TIMEOUT_S = 20.0  # seconds to connect, and to read each response
MESSAGE_CHARS = 1200  # an ARM message past this is cut at a word's end (a quota refusal's URLs are kept whole)
RETRIES = 3  # azure-core's retries of one request (429 with Retry-After, 5xx, connection errors)
CONFIG_FILE = "azure.yaml"
CLOUD_ENV = "ORCHESTRATE_AZURE_CLOUD"
SUBSCRIPTION_ENV = "AZURE_SUBSCRIPTION_ID"

# Resource Manager endpoint and Entra ID authority of each named cloud (azure-identity's AzureAuthorityHosts).
CLOUDS = {
    "AzureCloud": ("https://management.azure.com", "login.microsoftonline.com"),
    "AzureUSGovernment": ("https://management.usgovcloudapi.net", "login.microsoftonline.us"),
    "AzureChinaCloud": ("https://management.chinacloudapi.cn", "login.chinacloudapi.cn"),
}

_CAPACITY_CODES = frozenset({
    "SkuNotAvailable", "AllocationFailed", "ZonalAllocationFailed", "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest", "SpotAllocationFailed",
})
_AUTH_CODES = frozenset({
    "AuthorizationFailed", "AuthenticationFailed", "InvalidAuthenticationToken", "InvalidAuthenticationTokenTenant",
    "ExpiredAuthenticationToken", "SubscriptionNotFound", "InvalidSubscriptionId", "LinkedAuthorizationFailed",
})
_QUOTA_CODES = frozenset({"QuotaExceeded", "OperationNotAllowed"})  # OperationNotAllowed: only when it says quota
_QUOTA_FAMILY = re.compile(r"approved\s+(.+?)\s+Cores\s+quota", re.IGNORECASE)
_CAPACITY_HINT = "Azure has no room for this size there now; another zone, region or size with the same GPU may"
_QUOTA_HINT = "ask for more vCPUs of that family: Azure portal → Subscriptions → Usage + quotas"
_AUTH_HINT = ("sign in (`az login`), or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET; check the "
              "role assignment on the subscription (Contributor)")


@dataclass(frozen=True)
class AzureSettings:
    """Which Azure: the subscription and the Resource Manager endpoint (with its sign-in authority)."""

    subscription_id: str
    resource_manager: str = CLOUDS["AzureCloud"][0]
    authority: str = CLOUDS["AzureCloud"][1]

    @property
    def loopback(self) -> bool:
        """A test endpoint on this computer over plain HTTP: a static token, no sign-in."""
        return self.resource_manager.startswith("http://")

    @property
    def scope(self) -> str:
        """The token scope of this Resource Manager."""
        return self.resource_manager.rstrip("/") + "/.default"


def settings(home: Path) -> AzureSettings:
    """Reads which Azure to use: ``$ORCHESTRATE_HOME/azure.yaml``, with the environment over it.

    Raises:
        SpecError: no subscription is named (the line says "not set"), the config file is not a mapping, or the
            subscription or cloud is not one (plain HTTP is refused except to a loopback address).
    """
    path = home / CONFIG_FILE
    config = _config(path)
    manager, authority = _cloud(config)  # a bad value given is named before a value left out
    subscription = os.environ.get(SUBSCRIPTION_ENV) or config.get("subscription_id")
    accepted = f"the subscription id to launch in (a GUID), from {SUBSCRIPTION_ENV} or subscription_id in {path}"
    hint = "`az account show --query id`"
    if not subscription:
        raise SpecError(SUBSCRIPTION_ENV, None, accepted, hint=hint)  # "invalid AZURE_SUBSCRIPTION_ID: not set; …"
    if not re.fullmatch(r"[0-9A-Fa-f-]{36}", str(subscription)):
        raise SpecError(SUBSCRIPTION_ENV, subscription, accepted, hint=hint)
    return AzureSettings(str(subscription), manager, authority)


def launch_needs(home: Path) -> str | None:
    """What a launch on Azure will need that is not set yet, as one line for a plan; None when nothing is missing.

    A dry run needs no account, so a subscription left out is said here, not refused; a value that is set but
    wrong is refused as :func:`settings` refuses it.

    Raises:
        SpecError: the config file, the subscription or the cloud is set to something that is not one.
    """
    try:
        settings(home)
    except SpecError as error:
        if error.field != SUBSCRIPTION_ENV or error.received is not None:
            raise
        return (f"a launch needs {SUBSCRIPTION_ENV} (not set; or subscription_id in {home / CONFIG_FILE}) and "
                "Azure credentials (DefaultAzureCredential: `az login`, or AZURE_CLIENT_ID, AZURE_TENANT_ID and "
                "AZURE_CLIENT_SECRET)")
    return None


def _config(path: Path) -> dict[str, Any]:
    """``azure.yaml`` as a mapping (empty when there is none)."""
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise SpecError(str(path), str(loaded)[:80], "a YAML mapping: subscription_id, cloud")
    return loaded


def _cloud(config: dict[str, Any]) -> tuple[str, str]:
    """The Resource Manager endpoint and sign-in authority named by ``ORCHESTRATE_AZURE_CLOUD`` or ``cloud``."""
    cloud = str(os.environ.get(CLOUD_ENV) or config.get("cloud") or "AzureCloud")
    if cloud in CLOUDS:
        return CLOUDS[cloud]
    parts = urlsplit(cloud)
    if parts.scheme == "https" and parts.hostname:
        return cloud.rstrip("/"), str(config.get("authority") or CLOUDS["AzureCloud"][1])
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return cloud.rstrip("/"), ""
    accepted = ", ".join(CLOUDS) + ", an https:// Resource Manager URL, or http://127.0.0.1:PORT (tests)"
    raise SpecError(CLOUD_ENV if os.environ.get(CLOUD_ENV) else "cloud", cloud, accepted)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Clients:
    """The three management clients of one subscription."""

    resource: Any  # azure.mgmt.resource.resources.ResourceManagementClient
    network: Any  # azure.mgmt.network.NetworkManagementClient
    compute: Any  # azure.mgmt.compute.ComputeManagementClient


def clients(where: AzureSettings, *, polling_interval: float = 2.0) -> Clients:
    """Returns the resource, network and compute clients, signed in with ``DefaultAzureCredential`` (environment,
    workload identity, managed identity, Azure CLI, …), azure-core's retries (429 ``Retry-After`` honoured) and
    bounded timeouts. A loopback endpoint gets a static token over plain HTTP instead.

    Raises:
        AuthError: no credential could be made.
    """
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    credential, policy = _credential(where)
    options: dict[str, Any] = {
        "base_url": where.resource_manager, "credential_scopes": [where.scope], "polling_interval": polling_interval,
        "retry_total": RETRIES, "connection_timeout": HTTP_TIMEOUT_S, "read_timeout": HTTP_TIMEOUT_S,
    }
    made = []
    for kind in (ResourceManagementClient, NetworkManagementClient, ComputeManagementClient):
        extra = {"authentication_policy": policy()} if policy is not None else {}
        made.append(kind(credential, where.subscription_id, **options, **extra))
    return Clients(*made)


def _credential(where: AzureSettings) -> tuple[Any, Any]:
    """The credential, and for a loopback endpoint a factory of the bearer policy that allows plain HTTP."""
    if where.loopback:
        from azure.core.credentials import AccessToken
        from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

        class LoopbackToken:
            """A fixed token: only ever sent to an endpoint on this computer."""

            def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
                return AccessToken("loopback", int(time.time()) + 3600)

        class PlainHttpBearer(ARMChallengeAuthenticationPolicy):
            """Bearer auth over http:// — for a loopback endpoint only (FACTS: the SDK refuses it otherwise)."""

            def on_request(self, request: Any) -> None:
                request.context.options["enforce_https"] = False
                super().on_request(request)

        token = LoopbackToken()
        return token, lambda: PlainHttpBearer(token, where.scope)
    with translating(what="Azure sign-in"):
        from azure.identity import DefaultAzureCredential

        # Its own multi-line account of every credential it tried goes to stderr otherwise; our one line says it.
        logging.getLogger("azure.identity").setLevel(logging.ERROR)

        return DefaultAzureCredential(authority=where.authority), None


def translate(error: BaseException, *, what: str, operation: str | None = None) -> OrchestrateError:
    """Turns an Azure SDK (or azure-identity) exception into one of our errors, one line, naming the code.

    A long-running operation that Azure accepted and that then ended ``Failed`` (``AllocationFailed`` …) reaches the
    SDK as a successful poll (HTTP 200) of a failed operation: its line says the operation failed, not the HTTP
    status.

    Args:
        error: what the SDK raised.
        what: who called, e.g. "Azure compute in eastus".
        operation: what the long-running operation was doing, e.g. "VM create", for the line of one that failed.
    """
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
    from azure.identity import CredentialUnavailableError

    signed_out = isinstance(error, CredentialUnavailableError) or (
        isinstance(error, ClientAuthenticationError) and not getattr(error, "status_code", None))
    if signed_out:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return AuthError(f"{what}: no Azure credential worked (DefaultAzureCredential tried the environment, workload "
                         f"identity, managed identity, the Azure CLI, …): {_first_line(first)}", hint=_AUTH_HINT)
    if isinstance(error, HttpResponseError):
        code = error_code(error)
        message = _first_line(getattr(getattr(error, "error", None), "message", None) or error.message or str(error))
        if error.status_code is not None and error.status_code < 400:  # accepted, then the operation failed
            line = f"{what}: the {operation or 'long-running'} operation failed: {code or 'error'}: {message}"
        else:
            status = f" (HTTP {error.status_code})" if error.status_code else ""
            line = f"{what}: {code or 'error'}{status}: {message}"
        if code in _AUTH_CODES or error.status_code in (401, 403) or isinstance(error, ClientAuthenticationError):
            return AuthError(line, hint=_AUTH_HINT)
        if code in _CAPACITY_CODES:
            return CapacityError(line, hint=_CAPACITY_HINT)
        if code in _QUOTA_CODES and ("quota" in message.lower() or code == "QuotaExceeded"):
            family = quota_family(message)
            quota = f"\"{family}\" vCPUs" if family else "the vCPUs of that size's family"
            return QuotaError(f"{line}; the quota to raise: {quota}", hint=_QUOTA_HINT)
        return ProviderError(line, hint="see the Azure activity log; try again later if it persists")
    if isinstance(error, ServiceRequestError):
        return ProviderError(f"{what}: cannot reach Azure Resource Manager: {_first_line(str(error))}",
                             hint="check the network and the cloud setting (ORCHESTRATE_AZURE_CLOUD)")
    if isinstance(error, OrchestrateError):
        return error
    return ProviderError(f"{what}: {type(error).__name__}: {_first_line(str(error))}")


def error_code(error: Any) -> str | None:
    """The ARM error code of an SDK error (``SkuNotAvailable``, …), or None."""
    inner = getattr(error, "error", None)
    code = getattr(inner, "code", None)
    return str(code) if code else None


def quota_family(message: str) -> str | None:
    """The quota a refusal names, e.g. "Standard NCASv3_T4 Family" from "…exceeding approved Standard NCASv3_T4
    Family Cores quota…"; None when it names none."""
    found = _QUOTA_FAMILY.search(message)
    return found.group(1).strip() if found else None


@contextmanager
def translating(*, what: str, operation: str | None = None) -> Iterator[None]:
    """Re-raises any Azure SDK exception inside the block as one of our errors (ours pass through).

    Args:
        what: who calls, e.g. "Azure Resource Manager (eastus)".
        operation: the long-running operation waited for inside the block, e.g. "VM create" (see :func:`translate`).
    """
    try:
        yield
    except OrchestrateError:
        raise
    except Exception as error:  # noqa: BLE001 - every SDK failure becomes one of ours, here only
        raise translate(error, what=what, operation=operation) from None


def _first_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    """The message on one line (ARM messages may hold newlines and JSON), cut after ``limit`` characters at a word's
    end, never inside a word or an address: a quota refusal ends with the URL where the increase is asked for."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line.rfind(" ", 0, limit + 1)
    if cut <= 0:
        cut = limit
    word_end = line.find(" ", cut + 1)
    word = line[cut:word_end if word_end >= 0 else len(line)].strip()
    if "://" in word:  # keep an address whole: half of one is worse than none
        cut = word_end if word_end >= 0 else len(line)
    kept = line[:cut].rstrip()
    return kept if kept == line else kept + " …"
