"""The contract's raw inputs (section 1): which files belong to which source, and their columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RawSource:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional

    def files(self, raw_dir: Path) -> list[Path]:
        """This source's files in `raw_dir`, sorted by name so loads are deterministic."""
        found = [
            path
            for path in raw_dir.iterdir()
            if path.is_file()
            and path.name.lower().startswith(self.name)
            and file_format(path) is not None
        ]
        return sorted(found, key=lambda p: p.name)


def file_format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    return None


ORDERS = RawSource(
    name="orders",
    required=("order_id", "customer_id", "ordered_at", "amount"),
    optional=("currency", "channel"),
)
SUBSCRIPTION_EVENTS = RawSource(
    name="subscription_events",
    required=("event_id", "customer_id", "occurred_at", "event_type"),
    optional=("plan", "price", "billing_period", "currency", "channel", "segment"),
)
FX_RATES = RawSource(
    name="fx_rates",
    required=("currency", "rate_to_reporting"),
    optional=("month",),
)
SOURCES = (ORDERS, SUBSCRIPTION_EVENTS, FX_RATES)
SOURCES_BY_NAME = {source.name: source for source in SOURCES}

EVENT_TYPES = (
    "trial_started",
    "subscribed",
    "renewed",
    "plan_changed",
    "price_changed",
    "payment_failed",
    "cancelled",
    "expired",
    "reactivated",
)
