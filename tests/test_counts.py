"""The published tables are computed from counts the engine makes (int_survival_counts,
int_signup_counts, int_reactivation_counts, int_cohort_activity), never from a row per customer:
so the same polars functions work at any number of customers, on DuckDB or Spark."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from churn_pipeline.defs.marts import compute_marts
from churn_pipeline.lib.generate import GeneratorConfig, generate
from churn_pipeline.lib.high_risk import ENTERING_HIGH_RISK_SQL
from churn_pipeline.lib.warehouse_tables import DuckDBTables
from helpers import Built

COUNTS = ["staging.int_survival_counts", "staging.int_signup_counts", "staging.int_reactivation_counts"]
CONFIG = dict(customers=400, order_customers=200, months=14, seed=3, messy_share=0.02)


def _copies(raw: Path, copies: int) -> Path:
    """The same customers `copies` times over, each copy under its own ids (one fx file)."""
    for k in range(copies):
        part = raw.parent / f"part{k}"
        generate(part, GeneratorConfig(**CONFIG, id_prefix=f"c{k}"))
        for path in sorted(part.glob("*.csv")):
            if path.name == "fx_rates.csv":
                if k == 0:
                    raw.mkdir(parents=True, exist_ok=True)
                    shutil.move(path, raw / path.name)
                continue
            raw.mkdir(parents=True, exist_ok=True)
            shutil.move(path, raw / f"{path.stem}_copy{k}.csv")
        shutil.rmtree(part)
    return raw


@pytest.fixture(scope="module")
def once_and_thrice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Built]:
    root = tmp_path_factory.mktemp("copies")
    return Built(_copies(root / "once" / "raw", 1)), Built(_copies(root / "thrice" / "raw", 3))


def test_three_times_the_customers_is_the_same_rows_with_three_times_the_counts(once_and_thrice) -> None:
    once, thrice = once_and_thrice
    assert (
        thrice.sql("select count(*) from staging.int_customers").item()
        == 3 * once.sql("select count(*) from staging.int_customers").item()
    )
    for table in COUNTS:
        small, large = once.sql(f"select * from {table}"), thrice.sql(f"select * from {table}")
        counted = [
            c for c in small.columns if c in ("customers", "churns", "returned_ever") or c.startswith(("churns_", "returned_"))
        ]
        keys = [c for c in small.columns if c not in counted and not c.endswith("_days_to_return")]
        assert small.height > 0 and large.height == small.height, table
        joined = small.join(large, on=keys, how="full", nulls_equal=True, suffix="_large")
        assert joined.height == small.height, table
        for column in counted:
            assert (joined[f"{column}_large"] == 3 * joined[column]).all(), (table, column)
        for column in [c for c in small.columns if c.endswith("_days_to_return")]:
            assert joined.select((pl.col(f"{column}_large") - pl.col(column)).abs().max()).item() < 1e-9, (table, column)


def test_the_rates_do_not_change_with_copies_of_the_same_customers(once_and_thrice) -> None:
    once, thrice = once_and_thrice
    small, large = once.published_tables(), thrice.published_tables()
    by_channel = small["churn_by_channel"].join(large["churn_by_channel"], on=["basis", "channel"], suffix="_large")
    assert by_channel.height == small["churn_by_channel"].height > 0
    assert (by_channel["customers_large"] == 3 * by_channel["customers"]).all()
    for rate in ("monthly_churn_rate", "retention_m3", "rate_ratio_vs_others"):
        difference = by_channel.select((pl.col(f"{rate}_large") - pl.col(rate)).abs().max()).item()
        assert difference is not None and difference < 1e-12, rate
    sizes = small["cohort_retention"].join(large["cohort_retention"], on=["basis", "cohort_month", "months_since_signup"])
    assert (sizes["cohort_size_right"] == 3 * sizes["cohort_size"]).all()
    assert (sizes["retention_rate_right"] - sizes["retention_rate"]).abs().max() < 1e-12


@pytest.mark.parametrize("customers", [401, 402, 403, 404])
def test_value_tier_bounds_are_polars_nearest_quartiles(tmp_path: Path, customers: int) -> None:
    """The engine's quartiles of value at signup equal polars' `nearest` quantile of the
    observed customers' values, tier by tier; on the orders basis n - 1 is 178, 175, 181 and 185,
    so (n - 1) * q falls on halves (rounded up), quarters and whole numbers."""
    generate(tmp_path, GeneratorConfig(customers=customers, order_customers=customers // 2, months=10, seed=customers))
    built = Built(tmp_path)
    values = built.sql(
        "select basis, signup_value from staging.int_customers, staging.int_observation_window as w "
        "where cohort_month <= w.last_complete_month and signup_value is not null"
    )
    for (basis,), part in values.group_by(["basis"]):
        q1, q2, q3 = (part["signup_value"].quantile(q, "nearest") for q in (0.25, 0.5, 0.75))
        value = pl.col("signup_value")
        expected = (
            part.with_columns(
                pl.when(value <= q1)
                .then(pl.lit("Q1"))
                .when(value <= q2)
                .then(pl.lit("Q2"))
                .when(value <= q3)
                .then(pl.lit("Q3"))
                .otherwise(pl.lit("Q4"))
                .alias("tier"),
                pl.when(value <= q1).then(q1).when(value <= q2).then(q2).otherwise(q3).alias("bound"),
            )
            .group_by("tier", "bound")
            .agg(pl.len().cast(pl.Int64).alias("customers"))
        )
        tiers = built.sql(
            "select value as tier, value_tier_bound as bound, sum(customers)::bigint as customers "
            "from staging.int_survival_counts "
            "where basis = $b and dimension = 'value_tier' and value <> 'unknown' group by all",
            {"b": basis},
        )
        assert sorted(tiers.rows()) == sorted(expected.rows()), basis


class RecordingTables(DuckDBTables):
    """DuckDB's tables, noting every warehouse table a query or scan reads."""

    def __init__(self, conn) -> None:
        super().__init__(conn)
        self.read: set[str] = set()
        self.rows_by_query: dict[str, int] = {}

    def frame(self, sql: str) -> pl.DataFrame:
        self.read |= set(re.findall(r"\b(?:raw|staging|marts)\.\w+", sql))
        rows = super().frame(sql)
        self.rows_by_query[sql] = rows.height
        return rows

    def scan(self, table: str) -> pl.LazyFrame:
        self.read.add(table)
        return super().scan(table)


def test_no_published_table_reads_a_row_per_customer(once_and_thrice) -> None:
    once, _ = once_and_thrice
    tables = RecordingTables(once.conn)
    published = compute_marts(tables, once.settings)
    aggregates = {
        *COUNTS,
        "staging.int_cohort_activity",  # customers and revenue per cohort and interval of months
        "staging.int_price_change_exposure",  # per price change, role and period
        "staging.int_monthly_movements",  # per basis and calendar month
        "staging.int_revenue_retention",  # per calendar month
        "staging.int_observation_window",  # one row
    }
    # the one per-customer list: the engine joins the customers to the flagged months, and only
    # the listed customers come back
    listed = {"staging.int_customers", "staging.int_observed_subscription_events"}
    staged = {table for table in tables.read if not table.startswith("marts.")}
    assert staged == aggregates | listed
    assert tables.rows_by_query[ENTERING_HIGH_RISK_SQL] == published["customers_entering_high_risk"].height
