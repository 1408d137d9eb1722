"""Calendar months: polars expressions on first-of-month dates, and `YYYY-MM` partition keys."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import polars as pl

from churn_pipeline.lib.settings import SettingsError


def months_between(start: pl.Expr, end: pl.Expr) -> pl.Expr:
    """Whole calendar months from month `start` to month `end` (0 when equal)."""
    return (end.dt.year().cast(pl.Int32) - start.dt.year().cast(pl.Int32)) * 12 + (
        end.dt.month().cast(pl.Int32) - start.dt.month().cast(pl.Int32)
    )


def month_index_grid(frame: pl.LazyFrame, keys: list[str], last: str, name: str = "months_since_signup") -> pl.LazyFrame:
    """One row per key and month index 0..`last` (inclusive); keys with last < 0 get none."""
    return (
        frame.filter(pl.col(last) >= 0)
        .with_columns(pl.int_ranges(0, pl.col(last) + 1, dtype=pl.Int32).alias(name))
        .explode(name)
        .select([*keys, name])
    )


MONTH_KEY = "%Y-%m"


def parse_month(text: str, setting: str = "--month") -> date:
    """`YYYY-MM` as the first day of that month."""
    try:
        parsed = datetime.strptime(text.strip(), MONTH_KEY)
    except ValueError:
        raise SettingsError(f"{setting}: {text!r} is not a month written as YYYY-MM") from None
    return parsed.date()


def month_keys(first: str, last: str) -> tuple[str, ...]:
    """Every `YYYY-MM` from `first` to `last`, both included."""
    start, end = parse_month(first), parse_month(last)
    count = (end.year - start.year) * 12 + end.month - start.month + 1
    if count < 1:
        raise SettingsError(f"--months: {first}..{last} runs backwards")
    return tuple(f"{start.year + (start.month - 1 + i) // 12:04d}-{(start.month - 1 + i) % 12 + 1:02d}" for i in range(count))


def end_of_month(key: str, tz: str) -> datetime:
    """The instant a month closes in time zone `tz`: midnight starting the next month, as UTC.

    A month is the half-open window [first day 00:00, next month's first day 00:00).
    """
    month = parse_month(key)
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return datetime.combine(following, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)
