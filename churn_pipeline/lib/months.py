"""Calendar-month arithmetic on first-of-month dates, as polars expressions."""

from __future__ import annotations

import polars as pl


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
