"""The inventory of rented and owned boxes reached over SSH: a YAML file validated with pydantic.

Default location: ``$ORCHESTRATE_INVENTORY``, else ``$ORCHESTRATE_HOME/inventory.yaml``.

.. code-block:: yaml

    hosts:
      - name: lab-4090
        host: 203.0.113.10
        user: ubuntu
        key_path: ~/.ssh/lab_ed25519
        host_key: "ssh-ed25519 AAAAC3Nz..."   # or a fingerprint: "SHA256:..."
        gpu: {model: RTX 4090, count: 1}
        price: {per_month: 350, utilisation: 0.5}
      - name: lab-a100                          # on a private network, reached through a bastion (ProxyJump)
        host: 10.0.0.12                         # as the bastion resolves it
        user: ubuntu
        key_path: ~/.ssh/lab_ed25519
        host_key: "SHA256:..."
        proxy_jump:
          host: bastion.example.org
          port: 22                              # the default
          user: jump
          key_path: ~/.ssh/bastion_ed25519
          host_key: "ssh-ed25519 AAAAC3Nz..."   # or trust_on_first_use: true, as for a host
        gpu: {model: A100, count: 2}
        price: {per_hour: 2.0}
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.cost import monthly_rental_per_hour, owned_per_hour
from orchestrator.errors import SpecError
from orchestrator.inputs import one_line_path, read_text, spec_error
from orchestrator.machine import Access, Environment


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GpuSpec(_Strict):
    """The box's accelerators."""

    model: str | None = None  # e.g. "RTX 4090"; None for a CPU-only box
    count: int = Field(default=1, ge=0)


class OwnedBox(_Strict):
    """What an owned box costs: purchase over its life, plus power."""

    purchase_usd: float = Field(ge=0)
    lifetime_years: float = Field(gt=0)
    watts: float = Field(ge=0)
    kwh_usd: float = Field(ge=0)


class Price(_Strict):
    """One of: per hour, per month at a utilisation, or an owned box."""

    per_hour: float | None = Field(default=None, ge=0)
    per_month: float | None = Field(default=None, ge=0)
    utilisation: float = Field(default=1.0, gt=0, le=1)  # share of the month the box is used
    owned: OwnedBox | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Price:
        kinds = [k for k in (self.per_hour, self.per_month, self.owned) if k is not None]
        if len(kinds) != 1:
            raise ValueError("exactly one of per_hour, per_month or owned")
        return self

    def usd_per_hour(self) -> float:
        """Returns the price of one hour of use."""
        if self.per_hour is not None:
            return self.per_hour
        if self.per_month is not None:
            return monthly_rental_per_hour(self.per_month, self.utilisation)
        assert self.owned is not None
        return owned_per_hour(**self.owned.model_dump())


def _require_pin(host_key: str | None, trust_on_first_use: bool) -> None:
    if host_key is None and not trust_on_first_use:
        raise ValueError("host_key (a public key line or SHA256 fingerprint), or trust_on_first_use: true")


class _SSHEndpoint(_Strict):
    """Where an SSH login goes and how its host key is pinned (a box, or the bastion in front of it)."""

    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str
    key_path: Path  # the private key that logs in
    host_key: str | None = None  # "ssh-ed25519 AAAA…" or "SHA256:…"
    trust_on_first_use: bool = False

    @model_validator(mode="after")
    def _pinned_or_trusted(self) -> _SSHEndpoint:
        _require_pin(self.host_key, self.trust_on_first_use)
        return self

    def access(self) -> Access:
        """How to reach it over SSH, with its pinned host key."""
        return Access(
            via="ssh", host=self.host, port=self.port, user=self.user, key_path=str(self.key_path.expanduser()),
            host_key=self.host_key, trust_on_first_use=self.trust_on_first_use,
        )


class ProxyJump(_SSHEndpoint):
    """The bastion a box is reached through (OpenSSH's ProxyJump); its host key is pinned like a box's."""


class InventoryHost(_SSHEndpoint):
    """One box reachable over SSH, directly or through a bastion."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    private_address: str | None = None  # for multi-node training; defaults to host
    gpu: GpuSpec = Field(default_factory=GpuSpec)
    price: Price = Field(default_factory=lambda: Price(per_hour=0.0))
    prepare: Literal["image", "venv", "none"] = "image"
    python: str = "python3"  # the interpreter with Keras (image), or that creates the venv (venv)
    requirements: list[str] | None = None  # for prepare: venv; None means the payload's own list
    workdir: str = "orchestrate"  # base directory on the box, relative to the user's home unless absolute
    proxy_jump: ProxyJump | None = None  # the bastion to reach the box through; host is then as it resolves it

    @field_validator("python", "workdir")
    @classmethod
    def _one_line(cls, value: str) -> str:  # they go into remote shell commands, as a run file's environment does
        return one_line_path(value)

    def access(self) -> Access:
        """How to reach the box over SSH, with its pinned host key (and its bastion's, if any)."""
        bastion = self.proxy_jump.access() if self.proxy_jump is not None else None
        return replace(super().access(), bastion=bastion)

    def environment(self) -> Environment:
        """What the payload runs with on the box."""
        requirements = tuple(self.requirements) if self.requirements is not None else None
        return Environment(prepare=self.prepare, python=self.python, workdir=self.workdir, requirements=requirements)

    @property
    def gpu_text(self) -> str:
        """``"2 x RTX 4090"``, or ``"none"``."""
        return f"{self.gpu.count} x {self.gpu.model}" if self.gpu.model else "none"


class Inventory(_Strict):
    """All boxes of the inventory file."""

    hosts: list[InventoryHost]

    @field_validator("hosts")
    @classmethod
    def _unique_names(cls, hosts: list[InventoryHost]) -> list[InventoryHost]:
        names = [h.name for h in hosts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            # The repeated names are what was received, not the whole list of hosts.
            raise PydanticCustomError("unique_names", "each host name once", {"received": ", ".join(duplicates)})
        return hosts

    def select(self, *, names: list[str] | None = None, gpu: str | None = None) -> list[InventoryHost]:
        """Returns the hosts a run may use: the named ones, or those with the GPU model, or all.

        Raises:
            SpecError: a name is not in the inventory, or no host has the GPU model.
        """
        if names:
            by_name = {h.name: h for h in self.hosts}
            unknown = [n for n in names if n not in by_name]
            if unknown:
                raise SpecError("host", unknown[0], "a host of the inventory: " + ", ".join(sorted(by_name)))
            return [by_name[n] for n in names]
        if gpu:
            chosen = [h for h in self.hosts if (h.gpu.model or "").lower() == gpu.lower()]
            if not chosen:
                models = sorted({h.gpu.model for h in self.hosts if h.gpu.model})
                raise SpecError("gpu", gpu, "a GPU model of the inventory: " + (", ".join(models) or "none listed"))
            return chosen
        return list(self.hosts)


def inventory_path(home: Path) -> Path:
    """Returns where the inventory is read from."""
    return Path(os.environ.get("ORCHESTRATE_INVENTORY") or home / "inventory.yaml")


def load_inventory(path: Path) -> Inventory:
    """Reads and validates an inventory file.

    Raises:
        SpecError: the file is missing, not YAML, or a field is invalid (named with its host's index).
    """
    if not path.exists():
        raise SpecError(
            "inventory", str(path), "an existing inventory YAML file",
            hint="write one (see `orchestrate inventory --help`) or set ORCHESTRATE_INVENTORY",
        )
    try:
        data = yaml.safe_load(read_text(path, "inventory", "inventory YAML file"))
    except yaml.YAMLError:
        raise SpecError("inventory", str(path), "a valid YAML file") from None
    if not isinstance(data, dict):
        raise SpecError("inventory", str(path), "a YAML mapping with a hosts: list",
                        hint="see `orchestrate inventory --help` for an example")
    try:
        return Inventory.model_validate(data)
    except ValidationError as error:
        raise spec_error(error, prefix="inventory ", whole="file") from None
