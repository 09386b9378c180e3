"""The catalog's offers: one row per (provider, instance type, region), loaded from a CSV and validated.

The shipped ``offers.csv`` sits next to this module and is never modified at run time. A user catalog at
``$ORCHESTRATE_HOME/offers.csv`` (written by ``orchestrate catalog refresh``, or by hand) replaces it whole.

Columns: provider, instance_type, accelerator, gpu_count, gpu_memory_gib (per GPU), vcpus, memory_gib,
region, on_demand_per_hour and spot_per_hour (USD; spot may be empty), billing_rule (a key of
:data:`orchestrator.cost.BILLING_RULES`), billing_minimum_s (the rule's minimum, repeated so the file reads on
its own), status (available or retired), retired_on (the retirement date, required when retired; an
announced date may stand on an available row), as_of (the date the row's figures were recorded), source
(where the price and the spec come from) and terms (rented and owned rows only: the figures their hourly price is
computed from, ``per_month_usd=350; utilisation=0.5`` or ``purchase_usd=2000; lifetime_years=3; watts=350;
kwh_usd=0.15``; the loader checks that on_demand_per_hour agrees with them), and image (cloud rows: the machine
image to boot for that row — an AMI is regional, so a baked image is named per region; empty: the provider's
default, e.g. the Deep Learning AMI). A file without the terms or image column (written before they existed) still
loads.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.catalog.images import IMAGE_FORMATS
from orchestrator.cost import BILLING_RULES, monthly_rental_per_hour, owned_per_hour
from orchestrator.errors import SpecError

SHIPPED_PATH = Path(__file__).with_name("offers.csv")
USER_FILE_NAME = "offers.csv"
Status = Literal["available", "retired"]
STATUSES: tuple[str, ...] = get_args(Status)
SORT_KEYS = ("price", "price_per_gpu")


def _empty_is_none(value: object) -> object:
    """An empty CSV cell is a missing value."""
    return None if isinstance(value, str) and not value.strip() else value


def _iso_date(value: object) -> object:
    """Reads a CSV date as YYYY-MM-DD only (pydantic alone would take a Unix time or a midnight datetime too)."""
    if isinstance(value, str):
        text = value.strip()
        return date.fromisoformat(text) if text else None
    return value


# Each field's description is what the file may hold there; a bad value's error quotes it.
_Text = Annotated[str, Field(min_length=1, description="a non-empty text")]
_Count = Annotated[int, Field(ge=0, description="a whole number >= 0")]
_Amount = Annotated[float, Field(ge=0, description="a number >= 0")]
_Date = Annotated[date, BeforeValidator(_iso_date), Field(description="a date as YYYY-MM-DD")]


def _invalid(field: str, accepted: str) -> PydanticCustomError:
    """A bad value that only a rule across fields (or a table elsewhere) can tell; ``accepted`` says what would do."""
    return PydanticCustomError("catalog_value", "invalid {field}; accepted: {accepted}",
                               {"field": field, "accepted": accepted})


class Offer(BaseModel):
    """One machine that can be launched (or rented, or is owned) and what an hour of it costs.

    Built from a CSV row's text (:func:`parse_offers`) or from typed values; either way every field is checked.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    provider: Annotated[str, Field(  # aws, azure, rented, owned, …
        pattern=r"^[a-z][a-z0-9_-]*$", description="a lower-case name such as aws, azure, rented or owned")]
    instance_type: _Text  # the provider's name for the machine size
    accelerator: _Text  # GPU model as sold, e.g. "K80 (one GK210)"
    gpu_count: _Count
    gpu_memory_gib: _Amount  # per GPU
    vcpus: _Count
    memory_gib: _Amount
    region: _Text
    on_demand_per_hour: _Amount  # USD
    spot_per_hour: Annotated[  # USD; None when not offered or not known
        _Amount | None, BeforeValidator(_empty_is_none), Field(description="a number >= 0, or empty")]
    billing_rule: _Text  # a key of orchestrator.cost.BILLING_RULES
    billing_minimum_s: _Amount  # the rule's minimum, repeated so the file reads on its own
    status: Annotated[Status, Field(description=" or ".join(STATUSES))]
    retired_on: Annotated[  # required when retired; an announced date may stand on an available row
        date | None, BeforeValidator(_iso_date), Field(description="a date as YYYY-MM-DD, or empty")]
    as_of: _Date  # when the row's figures were recorded
    source: _Text  # where the price and the spec come from
    terms: str = ""  # rented/owned rows: "name=value; …" figures the hourly price comes from (see TERMS)
    image: str = ""  # cloud rows: the image to boot there (a prepared one: docs/images.md); empty: the provider's

    @field_validator("billing_rule")
    @classmethod
    def _known_rule(cls, rule: str) -> str:
        if rule not in BILLING_RULES:
            raise _invalid("billing_rule", "one of " + ", ".join(sorted(BILLING_RULES)))
        return rule

    @model_validator(mode="after")
    def _consistent(self) -> Offer:
        if self.retired and self.retired_on is None:
            raise _invalid("retired_on", "the retirement date (YYYY-MM-DD) when status is retired")
        minimum = BILLING_RULES[self.billing_rule].minimum_s
        if self.billing_minimum_s != minimum:
            raise _invalid("billing_minimum_s", f"{minimum:g}, the minimum of billing rule {self.billing_rule}")
        _check_terms(self.provider, self.terms, self.on_demand_per_hour)
        if self.image:
            formats = IMAGE_FORMATS.get(self.provider)
            if formats is None:
                raise _invalid("image", "empty on a rented or owned row (an image is for cloud rows)")
            if not re.fullmatch(formats[0], self.image):
                raise _invalid("image", f"empty, or {formats[1]}")
        return self

    @property
    def term_values(self) -> dict[str, float]:
        """Returns :attr:`terms` as numbers by name (empty for cloud rows)."""
        return _parse_terms(self.terms)

    @property
    def retired(self) -> bool:
        """True when the offer can no longer be launched."""
        return self.status == "retired"

    @property
    def price_per_gpu_hour(self) -> float | None:
        """On-demand USD per GPU-hour, or None for a machine without GPUs."""
        return self.on_demand_per_hour / self.gpu_count if self.gpu_count else None

    def to_row(self) -> dict[str, str]:
        """Returns the offer as a CSV row (the column order of :data:`COLUMNS`)."""
        row: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                row[name] = ""
            elif isinstance(value, date):
                row[name] = value.isoformat()
            elif isinstance(value, float):
                row[name] = f"{value:g}" if name not in ("on_demand_per_hour", "spot_per_hour") else _money(value)
            else:
                row[name] = str(value)
        return row

    def to_json(self) -> dict[str, Any]:
        """Returns the offer as a JSON-ready dict, with the derived price per GPU-hour."""
        data = self.model_dump(mode="json")
        data["price_per_gpu_hour"] = self.price_per_gpu_hour
        return data


COLUMNS: tuple[str, ...] = tuple(Offer.model_fields)
OPTIONAL_COLUMNS = ("terms", "image")
# The terms each kind of row needs, and the hourly price they give (orchestrator.cost).
TERMS: dict[str, tuple[str, ...]] = {
    "rented": ("per_month_usd", "utilisation"),
    "owned": ("purchase_usd", "lifetime_years", "watts", "kwh_usd"),
}


def _parse_terms(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for part in filter(None, (piece.strip() for piece in text.split(";"))):
        name, equals, raw = part.partition("=")
        try:
            value = float(raw) if equals else float("nan")
        except ValueError:
            value = float("nan")
        if not name.strip() or value != value or value < 0 or value == float("inf"):
            raise _invalid("terms", "name=number pairs (>= 0) separated by ;")
        values[name.strip()] = value
    return values


def _check_terms(provider: str, text: str, on_demand: float) -> None:
    """Checks a row's terms: required on rented and owned rows, absent elsewhere, and agreeing with its price."""
    values = _parse_terms(text)
    needed = TERMS.get(provider)
    if needed is None:
        if values:
            raise _invalid("terms", "empty on a cloud row (terms are for rented and owned rows)")
        return
    if sorted(values) != sorted(needed):
        raise _invalid("terms", "; ".join(f"{name}=…" for name in needed))
    if provider == "rented":
        if not 0 < values["utilisation"] <= 1:
            raise _invalid("terms", "utilisation in (0, 1]")
        hourly = monthly_rental_per_hour(values["per_month_usd"], values["utilisation"])
    else:
        if values["lifetime_years"] <= 0:
            raise _invalid("terms", "lifetime_years greater than 0")
        hourly = owned_per_hour(**values)
    if abs(hourly - on_demand) > max(0.0001, 0.005 * hourly):
        raise _invalid("on_demand_per_hour", f"{hourly:.4f}, the hourly price its terms give")


def _money(value: float) -> str:
    """Formats a price without float noise (0.526, not 0.5260000000000001) and without losing digits."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if "." in text else f"{text}.0"


def user_catalog_path(home: Path | None = None) -> Path:
    """Returns where the user's catalog lives: ``$ORCHESTRATE_HOME/offers.csv`` (default ``~/.orchestrate``)."""
    if home is None:
        home = Path(os.environ.get("ORCHESTRATE_HOME") or Path.home() / ".orchestrate")
    return home / USER_FILE_NAME


def catalog_path(home: Path | None = None) -> Path:
    """Returns the catalog in force: the user's file when it exists, else the shipped one."""
    user = user_catalog_path(home)
    return user if user.is_file() else SHIPPED_PATH


def _first_problem(error: ValidationError) -> tuple[str, str]:
    """Returns the field of a row's first bad value and what that field accepts."""
    first = error.errors(include_url=False)[0]
    context = first.get("ctx") or {}
    field = str(context.get("field") or first["loc"][0])
    accepted = context.get("accepted") or Offer.model_fields[field].description
    return field, str(accepted)


def parse_offers(text: str, *, origin: str = "offers.csv") -> list[Offer]:
    """Parses and validates a catalog CSV.

    Args:
        text: the CSV, header first.
        origin: what to call the file in error messages.

    Returns:
        The offers in file order.

    Raises:
        SpecError: a missing or unknown column, a bad value (the message names the row, its line, the field
            and the value received) or a duplicate (provider, instance_type, region).
    """
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [name for name in COLUMNS if name not in header and name not in OPTIONAL_COLUMNS]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown:
        problem = "missing " + ", ".join(missing) if missing else "unknown " + ", ".join(unknown)
        raise SpecError("catalog columns", ",".join(header), ",".join(COLUMNS),
                        message=f"{origin}: bad header ({problem}); expected: {','.join(COLUMNS)}")
    offers: list[Offer] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, row in enumerate(reader, start=1):
        line = reader.line_num
        if None in row or any(value is None for value in row.values()):
            raise SpecError("catalog row", row, f"{len(header)} fields",
                            message=f"{origin}: row {number} (line {line}): expected {len(header)} fields")
        try:
            offer = Offer.model_validate(row)
        except ValidationError as error:
            field, accepted = _first_problem(error)
            value = row.get(field, "")
            raise SpecError(
                field, value, accepted,
                message=f"{origin}: row {number} (line {line}): invalid {field}: "
                        f"received {value!r}; accepted: {accepted}",
            ) from None
        key = (offer.provider, offer.instance_type, offer.region)
        if key in seen:
            raise SpecError("instance_type", offer.instance_type, "one row per provider, instance type and region",
                            message=f"{origin}: row {number} (line {line}): duplicate of row {seen[key]}: "
                                    f"{'/'.join(key)}")
        seen[key] = number
        offers.append(offer)
    return offers


def load_offers(path: Path | None = None, *, home: Path | None = None) -> list[Offer]:
    """Loads and validates the catalog.

    Args:
        path: a catalog CSV; by default the one in force (see :func:`catalog_path`).
        home: the Orchestrate home to look for a user catalog in (default ``$ORCHESTRATE_HOME``).

    Raises:
        SpecError: the file cannot be read or a row is invalid.
    """
    path = path or catalog_path(home)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError("catalog", str(path), "a readable CSV file",
                        message=f"cannot read catalog {path}: {error.strerror or error}") from None
    return parse_offers(text, origin=str(path))


def filter_offers(
    offers: Iterable[Offer],
    *,
    gpu: str | None = None,
    provider: str | None = None,
    max_price: float | None = None,
    include_retired: bool = False,
) -> list[Offer]:
    """Returns the offers that match every given condition.

    Args:
        gpu: a case-insensitive substring of the accelerator ("k80" matches "K80 (one GK210)").
        provider: the provider's name, case-insensitive.
        max_price: the most on-demand USD per hour.
        include_retired: keep retired offers too.
    """
    wanted_gpu = gpu.casefold() if gpu else None
    wanted_provider = provider.casefold() if provider else None
    return [
        offer for offer in offers
        if (include_retired or not offer.retired)
        and (wanted_gpu is None or wanted_gpu in offer.accelerator.casefold())
        and (wanted_provider is None or offer.provider.casefold() == wanted_provider)
        and (max_price is None or offer.on_demand_per_hour <= max_price)
    ]


def sort_offers(offers: Iterable[Offer], key: str = "price") -> list[Offer]:
    """Returns the offers cheapest first, by on-demand price per hour or per GPU-hour.

    Offers without GPUs go last when sorting per GPU-hour; ties keep provider and instance type order.

    Raises:
        SpecError: ``key`` is not one of :data:`SORT_KEYS`.
    """
    if key not in SORT_KEYS:
        raise SpecError("sort", key, " or ".join(SORT_KEYS))

    def price(offer: Offer) -> float:
        if key == "price":
            return offer.on_demand_per_hour
        per_gpu = offer.price_per_gpu_hour
        return float("inf") if per_gpu is None else per_gpu

    return sorted(offers, key=lambda offer: (price(offer), offer.provider, offer.instance_type, offer.region))


def format_offers(offers: Sequence[Offer]) -> str:
    """Returns the offers as catalog CSV text, header first."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for offer in offers:
        writer.writerow(offer.to_row())
    return buffer.getvalue()


def write_offers(offers: Sequence[Offer], path: Path) -> None:
    """Writes a catalog CSV atomically: readers see the old file or the new one, never half of one.

    Raises:
        SpecError: the directory cannot be written.
    """
    text = format_offers(offers)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".offers-", suffix=".csv.tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise SpecError("catalog", str(path), "a writable path",
                        message=f"cannot write catalog {path}: {error.strerror or error}") from None
