"""What the user asks for: RunSpec, MachineSpec and SuiteSpec (pydantic), loaded from flags and YAML.

Every validation failure becomes one :class:`SpecError` line that names the field, the value received and
what is accepted; nothing is written anywhere before a spec validates.
"""

from __future__ import annotations

import math
import re
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.access import parse_cidr
from orchestrator.errors import SpecError
from orchestrator.inputs import one_line_path, read_text, shown, spec_error
from orchestrator.machine import PROVIDER_NAMES, Environment
from orchestrator.payload_files import suites_dir

_SUITE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
Backend = Literal["tensorflow", "jax", "torch"]
Scalar = bool | int | float | str | None
ParamValue = Scalar | list[Scalar]  # a list runs the suite over each value (batch sizes, models, …)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class EnvironmentSpec(_Strict):
    """Clouds: what the payload runs with on the image, when it is not what the provider assumes (a custom AMI
    whose Keras lives in a conda env, say)."""

    prepare: Literal["image", "venv", "none"] = "image"  # image: Keras is there; venv: create one; none: trust it
    python: str = "python3"  # the interpreter with Keras (image), or the one that creates the venv (venv)
    workdir: str = "orchestrate"  # base directory on the machine, relative to the login's home unless absolute
    requirements: list[str] | None = None  # for prepare: venv; None means the payload's own list

    @field_validator("python", "workdir")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return one_line_path(value)

    def environment(self) -> Environment:
        """As the machine's :class:`~orchestrator.machine.Environment`."""
        requirements = tuple(self.requirements) if self.requirements is not None else None
        return Environment(prepare=self.prepare, python=self.python, workdir=self.workdir, requirements=requirements)


class MachineSpec(_Strict):
    """Which machines to run on; :mod:`orchestrator.catalog.placement` resolves it into ranked placements."""

    instance_type: str | None = None  # provider's name for the machine size
    count: int | None = Field(default=None, ge=1, le=64)  # None: one, or every --host named
    spot: bool = False
    max_price: float | None = Field(default=None, gt=0)  # spot: USD per hour at most
    region: str | None = None
    regions: list[str] | None = None  # failover may use these regions (in the catalog's price order)
    on_demand_fallback: bool = True  # spot → on-demand when spot has no capacity
    max_attempts: int = Field(default=3, ge=1, le=20)  # placements tried before the run gives up
    price_per_hour: float | None = Field(default=None, ge=0)  # USD; overrides the catalog's or inventory's price
    hosts: list[str] | None = None  # rented: these inventory boxes (one run on each, in parallel)
    gpu: str | None = None  # any box (rented) or instance type (clouds) with this GPU model
    wait_s: float = Field(default=0.0, ge=0, le=24 * 3600)  # how long to wait for a busy box
    reclaim: bool = False  # rented: free boxes held by abandoned runs (stop their payloads) instead of refusing
    image: str | None = None  # clouds: the machine image to boot; its form is checked per provider (placement.py)
    allow_cidr: str | None = None  # clouds: who may reach port 22; default this computer's public address alone
    environment: EnvironmentSpec | None = None  # clouds: the image's interpreter and workdir (default: the provider's)
    profile: str | None = None  # aws: a profile of the shared config files (default: boto3's chain)

    @field_validator("allow_cidr")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return parse_cidr(value)
        except SpecError as error:
            raise ValueError(error.accepted) from None

    @field_validator("profile")
    @classmethod
    def _profile_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\w+=,.@:/-]{1,128}", value):
            raise ValueError("an AWS profile name: 1 to 128 letters, digits and _+=,.@:/-")
        return value


class SuiteSpec(_Strict):
    """A named suite as shipped in ``benchmarks/suites/<name>.yaml``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    estimated_duration_s: float = Field(gt=0)
    params: dict[str, ParamValue]


class RunSpec(_Strict):
    """One run: where, what, and how long it may take."""

    provider: str = "local"
    suite: str = "smoke"
    params: dict[str, ParamValue] = Field(default_factory=dict)  # overrides of the suite's params
    machine: MachineSpec = Field(default_factory=MachineSpec)
    backend: Backend = "tensorflow"
    timeout_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)  # the payload is killed past this
    keep: bool = False  # leave the machine up after the run
    multi_node: bool = False  # one training across the machines (TF_CONFIG per worker), not one run on each
    multi_node_port: int = Field(default=23456, ge=1024, le=65000)  # worker i listens on port + i
    # A one-machine spot run copies the payload's backups back after this many newly completed epochs, so that a
    # replacement for an evicted machine resumes there.
    checkpoint_every_epochs: int = Field(default=1, ge=1, le=10_000)
    name: str | None = None  # a label for reports

    @field_validator("name")
    @classmethod
    def _printable_label(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or len(value) > 200 or not value.isprintable()):
            raise ValueError("printable text of 1 to 200 characters (no control characters)")
        return value

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in PROVIDER_NAMES:
            raise ValueError("one of " + ", ".join(PROVIDER_NAMES))
        return value


def available_suites() -> list[str]:
    """Returns the names of the shipped suites."""
    return sorted(path.stem for path in suites_dir().glob("*.yaml"))


def _read_yaml(path: Path, field: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(read_text(path, field, "YAML file"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SpecError(field, str(path), f"a valid YAML file{where}") from None
    if not isinstance(loaded, dict):
        raise SpecError(field, str(path), "a YAML mapping of field: value")
    return loaded


def load_suite(name_or_path: str) -> SuiteSpec:
    """Loads a suite by name (``smoke``) or from a path to a suite YAML file.

    Raises:
        SpecError: the suite does not exist or its file is invalid.
    """
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        path = candidate
    elif not _SUITE_NAME.match(name_or_path):
        raise SpecError("suite", shown(name_or_path), "one of " + ", ".join(available_suites())
                        + ", or a path to a suite .yaml file")
    else:
        path = suites_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise SpecError("suite", name_or_path, "one of " + ", ".join(available_suites()))
    try:
        return SuiteSpec.model_validate(_read_yaml(path, "suite"))
    except ValidationError as error:
        raise spec_error(error, prefix=f"suite file {shown(str(path))}: ") from None


def _check_scalar(field: str, default: Scalar, value: Scalar) -> Scalar:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise SpecError(field, value, "true or false")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SpecError(field, value, "an integer")
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise SpecError(field, value, "a finite number")
    # A text default ("auto", a model name, a path) may stand for numbers too (dropout: auto or 0.3): the
    # payload's own check, run at plan time, decides.
    return value


def _check_type(name: str, default: ParamValue, value: ParamValue) -> ParamValue:
    """Checks an override against the type of the suite's default (the payload checks ranges)."""
    field = f"params.{name}"
    if not isinstance(default, list):
        if isinstance(value, list):
            raise SpecError(field, value, "a single value, not a list")
        return _check_scalar(field, default, value)
    values = value if isinstance(value, list) else [value]  # --set batch_sizes=64 means [64]
    # An empty list passes: whether a suite accepts one (deploy: quantizations=[] skips them; throughput:
    # batch_sizes=[] is refused) is the payload's own check's to say, at plan time.
    # Mixed lists (e.g. xla: [false, true]) are checked against the default's first element's type.
    element = default[0] if default else None
    return [_check_scalar(f"{field}[{i}]", element, v) for i, v in enumerate(values)]


def resolve_params(suite: SuiteSpec, overrides: dict[str, ParamValue]) -> dict[str, ParamValue]:
    """Returns the suite's params with the user's overrides applied, checking names and types.

    Raises:
        SpecError: an override names a param the suite does not have, or has the wrong type.
    """
    params = dict(suite.params)
    for name, value in overrides.items():
        if name not in suite.params:
            raise SpecError("params", name, f"a param of suite {suite.name}: " + ", ".join(sorted(suite.params)))
        params[name] = _check_type(name, suite.params[name], value)
    return params


def _number_or_text(value: Scalar) -> Scalar:
    if isinstance(value, str):
        # YAML 1.1 reads "1e-4" as a string; a learning rate written that way is a number ("nan" and "inf" are
        # not numbers anyone means: they stay text, and the param's type check refuses them).
        with suppress(ValueError):
            number = float(value)
            return number if math.isfinite(number) else value
    return value


def parse_assignment(text: str) -> tuple[str, ParamValue]:
    """Parses one ``--set key=value`` flag; the value is read as YAML (``3`` is an int, ``true`` a bool,
    ``[16,32]`` a list).

    Raises:
        SpecError: the text is not ``key=value`` or the value is not a scalar.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError("--set", text, "key=value, e.g. --set epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    scalar = (bool, int, float, str, type(None))
    if isinstance(value, list) and all(isinstance(v, scalar) for v in value):
        return key.strip(), [_number_or_text(v) for v in value]
    if not isinstance(value, scalar):
        raise SpecError(f"params.{key.strip()}", raw, "a number, true/false, a string, or a list of those")
    return key.strip(), _number_or_text(value)


def build_run_spec(file: Path | None, overrides: dict[str, Any]) -> RunSpec:
    """Builds a RunSpec from an optional YAML file and flag overrides (flags win).

    Args:
        file: a run YAML file whose top-level keys are RunSpec fields, or None.
        overrides: flag values; ``None`` means the flag was not given. ``params`` merge key by key and
            ``machine`` field by field over the file's.

    Raises:
        SpecError: any field is invalid, or the params do not fit the suite.
    """
    data: dict[str, Any] = _read_yaml(file, "file") if file is not None else {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("params", "machine") and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    try:
        spec = RunSpec.model_validate(data)
    except ValidationError as error:
        raise spec_error(error) from None
    resolve_params(load_suite(spec.suite), spec.params)
    return spec
