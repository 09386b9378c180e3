"""Provider registry: name → (module, class), imported only when that provider is used.

Keeping the registry as strings means `orchestrate --help` never imports boto3 or the Azure SDK.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import SpecError
from orchestrator.machine import PROVIDER_NAMES

if TYPE_CHECKING:
    from orchestrator.machine import LeaseBook
    from orchestrator.providers.base import Provider

# One entry per name of ``machine.PROVIDER_NAMES`` (the names the spec accepts; tests/unit/test_layers.py checks).
PROVIDERS: dict[str, tuple[str, str]] = {
    "local": ("orchestrator.providers.local", "LocalProvider"),
    "rented": ("orchestrator.providers.rented", "RentedProvider"),
    "aws": ("orchestrator.providers.aws.instance", "AwsProvider"),
    "azure": ("orchestrator.providers.azure.vm", "AzureProvider"),
}


def get_provider(name: str, home: Path, *, leases: LeaseBook | None = None, **options: Any) -> Provider:
    """Returns a provider instance by name.

    Args:
        name: a key of :data:`PROVIDERS`.
        home: the Orchestrate home directory (``$ORCHESTRATE_HOME``).
        leases: the lease book, for providers that lend boxes (rented).
        options: settings of that provider (aws: ``profile``); the others ignore them.

    Raises:
        SpecError: the name is not a known provider.
    """
    if name not in PROVIDERS:
        raise SpecError("provider", name, "one of " + ", ".join(PROVIDER_NAMES))
    module_name, class_name = PROVIDERS[name]
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = cls(home=home, leases=leases, **options)
    return provider
