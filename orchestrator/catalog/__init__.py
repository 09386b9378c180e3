"""What can be launched and what it costs: the offers catalog, its lookup, and its refresh from price APIs.

The price APIs (``refresh``) import boto3 only when called, so importing this package stays cheap.
"""

from __future__ import annotations

from orchestrator.catalog.offers import (
    COLUMNS,
    SHIPPED_PATH,
    SORT_KEYS,
    Offer,
    catalog_path,
    filter_offers,
    load_offers,
    sort_offers,
    user_catalog_path,
    write_offers,
)

__all__ = [
    "COLUMNS",
    "SHIPPED_PATH",
    "SORT_KEYS",
    "Offer",
    "catalog_path",
    "filter_offers",
    "load_offers",
    "sort_offers",
    "user_catalog_path",
    "write_offers",
]
