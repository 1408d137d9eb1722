"""The contract's raw inputs (section 1): which files belong to which source, and their columns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MONTH_FOLDER = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class RawInputError(ValueError):
    """A user mistake in the raw inputs; the message is one line naming the file and column."""


def inside_raw_dir(path: Path, raw_dir: Path) -> Path:
    """`path`, refused when it is a link that leads outside the raw directory (nothing of it is read)."""
    root = raw_dir.resolve()
    if not path.resolve().is_relative_to(root):
        raise RawInputError(f"{relative_name(path, raw_dir)}: a link to a file outside the raw directory {raw_dir}; refused")
    return path


@dataclass(frozen=True)
class RawSource:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional

    def files(self, raw_dir: Path, months: tuple[str, ...] | None = None) -> list[Path]:
        """This source's files, sorted by relative path so loads are deterministic.

        Files in a `YYYY-MM/` folder are that month's delivery; files directly in `raw_dir`
        (history, reference data such as fx rates) belong to every run. `months=None` means
        every file; otherwise the top-level files and only those months' folders.
        """
        folders = [raw_dir]
        folders += sorted(
            path
            for path in raw_dir.iterdir()
            if path.is_dir() and MONTH_FOLDER.match(path.name) and (months is None or path.name in months)
        )
        found = [
            inside_raw_dir(path, raw_dir)
            for folder in folders
            for path in folder.iterdir()
            if path.name.lower().startswith(self.name)
            and file_format(path) is not None
            and inside_raw_dir(path, raw_dir).is_file()
        ]
        return sorted(found, key=lambda p: relative_name(p, raw_dir))


def delivered_months(raw_dir: Path) -> list[str]:
    """The `YYYY-MM` folders of `raw_dir` holding orders* or subscription_events* files, in order."""
    if not raw_dir.is_dir():
        return []
    found = {delivery_month(path, raw_dir) for source in (ORDERS, SUBSCRIPTION_EVENTS) for path in source.files(raw_dir)}
    return sorted(month for month in found if month is not None)


def relative_name(path: Path, raw_dir: Path) -> str:
    """How a file is named in `source_file`: its path below the raw directory, e.g. `2024-05/orders.csv`."""
    return path.relative_to(raw_dir).as_posix()


def delivery_month(path: Path, raw_dir: Path) -> str | None:
    """The month folder a file was delivered in (`YYYY-MM`), or None for a file directly in `raw_dir`."""
    return path.parent.name if path.parent != raw_dir else None


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
