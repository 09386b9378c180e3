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
kwh_usd=0.15``; the loader checks that on_demand_per_hour agrees with them). A file without the terms column
(written before it existed) still loads.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any

from orchestrator.errors import SpecError

SHIPPED_PATH = Path(__file__).with_name("offers.csv")
USER_FILE_NAME = "offers.csv"
STATUSES = ("available", "retired")
SORT_KEYS = ("price", "price_per_gpu")
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class Offer:
    """One machine that can be launched (or rented, or is owned) and what an hour of it costs."""

    provider: str  # aws, azure, rented, owned, …
    instance_type: str  # the provider's name for the machine size
    accelerator: str  # GPU model as sold, e.g. "K80 (one GK210)"
    gpu_count: int
    gpu_memory_gib: float  # per GPU
    vcpus: int
    memory_gib: float
    region: str
    on_demand_per_hour: float  # USD
    spot_per_hour: float | None  # USD; None when not offered or not known
    billing_rule: str  # a key of orchestrator.cost.BILLING_RULES
    billing_minimum_s: float
    status: str  # available | retired
    retired_on: date | None
    as_of: date  # when the row's figures were recorded
    source: str  # where the price and the spec come from
    terms: str = ""  # rented/owned rows: "name=value; …" figures the hourly price comes from (see TERMS)

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
        for name, value in asdict(self).items():
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
        data = asdict(self)
        data["retired_on"] = self.retired_on.isoformat() if self.retired_on else None
        data["as_of"] = self.as_of.isoformat()
        data["price_per_gpu_hour"] = self.price_per_gpu_hour
        return data


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Offer))
OPTIONAL_COLUMNS = ("terms",)
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
            raise _RowError("terms", text, "name=number pairs (>= 0) separated by ;")
        values[name.strip()] = value
    return values


def _check_terms(provider: str, text: str, on_demand: float) -> None:
    """Checks a row's terms: required on rented and owned rows, absent elsewhere, and agreeing with its price."""
    from orchestrator.cost import monthly_rental_per_hour, owned_per_hour

    values = _parse_terms(text)
    needed = TERMS.get(provider)
    if needed is None:
        if values:
            raise _RowError("terms", text, "empty on a cloud row (terms are for rented and owned rows)")
        return
    if sorted(values) != sorted(needed):
        raise _RowError("terms", text, "; ".join(f"{name}=…" for name in needed))
    if provider == "rented":
        if not 0 < values["utilisation"] <= 1:
            raise _RowError("terms", text, "utilisation in (0, 1]")
        hourly = monthly_rental_per_hour(values["per_month_usd"], values["utilisation"])
    else:
        if values["lifetime_years"] <= 0:
            raise _RowError("terms", text, "lifetime_years greater than 0")
        hourly = owned_per_hour(**values)
    if abs(hourly - on_demand) > max(0.0001, 0.005 * hourly):
        raise _RowError("on_demand_per_hour", f"{on_demand:g}", f"{hourly:.4f}, the hourly price its terms give")


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


class _RowError(Exception):
    def __init__(self, field: str, value: str, accepted: str) -> None:
        super().__init__(field)
        self.field, self.value, self.accepted = field, value, accepted


def _text(row: dict[str, str], name: str) -> str:
    value = row[name].strip()
    if not value:
        raise _RowError(name, row[name], "a non-empty text")
    return value


def _number(row: dict[str, str], name: str, *, integer: bool = False, optional: bool = False) -> float | None:
    raw = row[name].strip()
    if not raw and optional:
        return None
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if value < 0 or value != value or value == float("inf"):  # negative, unparsable, NaN or infinite
        kind = "a whole number" if integer else "a number"
        raise _RowError(name, raw, f"{kind} >= 0" + (", or empty" if optional else ""))
    return value


def _date(row: dict[str, str], name: str, *, optional: bool = False) -> date | None:
    raw = row[name].strip()
    if not raw and optional:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _RowError(name, raw, "a date as YYYY-MM-DD" + (", or empty" if optional else "")) from None


def _parse_row(row: dict[str, str]) -> Offer:
    from orchestrator.cost import BILLING_RULES

    provider = _text(row, "provider")
    if not _PROVIDER_NAME.match(provider):
        raise _RowError("provider", provider, "a lower-case name such as aws, azure, rented or owned")
    rule = _text(row, "billing_rule")
    if rule not in BILLING_RULES:
        raise _RowError("billing_rule", rule, "one of " + ", ".join(sorted(BILLING_RULES)))
    status = _text(row, "status")
    if status not in STATUSES:
        raise _RowError("status", status, " or ".join(STATUSES))
    retired_on = _date(row, "retired_on", optional=True)
    if status == "retired" and retired_on is None:
        raise _RowError("retired_on", row["retired_on"], "the retirement date (YYYY-MM-DD) when status is retired")
    minimum = _number(row, "billing_minimum_s")
    assert minimum is not None
    if minimum != BILLING_RULES[rule].minimum_s:
        raise _RowError("billing_minimum_s", row["billing_minimum_s"],
                        f"{BILLING_RULES[rule].minimum_s:g}, the minimum of billing rule {rule}")
    on_demand = _number(row, "on_demand_per_hour")
    as_of = _date(row, "as_of")
    assert on_demand is not None and as_of is not None
    terms = (row.get("terms") or "").strip()
    _check_terms(provider, terms, on_demand)
    return Offer(
        provider=provider,
        instance_type=_text(row, "instance_type"),
        accelerator=_text(row, "accelerator"),
        gpu_count=int(_number(row, "gpu_count", integer=True) or 0),
        gpu_memory_gib=float(_number(row, "gpu_memory_gib") or 0),
        vcpus=int(_number(row, "vcpus", integer=True) or 0),
        memory_gib=float(_number(row, "memory_gib") or 0),
        region=_text(row, "region"),
        on_demand_per_hour=on_demand,
        spot_per_hour=_number(row, "spot_per_hour", optional=True),
        billing_rule=rule,
        billing_minimum_s=minimum,
        status=status,
        retired_on=retired_on,
        as_of=as_of,
        source=_text(row, "source"),
        terms=terms,
    )


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
            offer = _parse_row(row)
        except _RowError as error:
            raise SpecError(
                error.field, error.value, error.accepted,
                message=f"{origin}: row {number} (line {line}): invalid {error.field}: "
                        f"received {error.value!r}; accepted: {error.accepted}",
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
