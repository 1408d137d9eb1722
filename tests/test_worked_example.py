"""The contract's section 5 worked example, run through the real Dagster job.

Every expected number below is copied from ../shared/contract.md section 5.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from helpers import run_job

AS_OF = "2024-07-10T00:00:00Z"

# cohort, months_since_signup: cohort_size, active_customers, revenue
SUBSCRIPTION_COHORTS = {
    ("2024-01", 0): (2, 1, 20),
    ("2024-01", 1): (2, 0, 0),
    ("2024-01", 2): (2, 1, 20),
    ("2024-01", 3): (2, 1, 20),
    ("2024-01", 4): (2, 1, 20),
    ("2024-01", 5): (2, 1, 20),
    ("2024-02", 0): (2, 2, 70),
    ("2024-02", 1): (2, 2, 40),
    ("2024-02", 2): (2, 1, 20),
    ("2024-02", 3): (2, 1, 20),
    ("2024-02", 4): (2, 1, 20),
    ("2024-03", 0): (1, 1, 20),
    ("2024-03", 1): (1, 1, 20),
    ("2024-03", 2): (1, 1, 20),
    ("2024-03", 3): (1, 1, 20),
}
ORDER_COHORTS = {
    ("2024-01", 0): (2, 2, 60),
    ("2024-01", 1): (2, 0, 0),
    ("2024-01", 2): (2, 1, 30),
    ("2024-01", 3): (2, 0, 0),
    ("2024-01", 4): (2, 1, 25),
    ("2024-01", 5): (2, 0, 0),
}
# months_since_signup: at_risk, churned, survival
CURVE = {
    "subscription": {0: (5, 1, 0.8), 1: (4, 1, 0.6), 2: (3, 1, 0.4), 3: (2, 0, 0.4), 4: (1, 0, 0.4)},
    "orders": {0: (2, 0, 1.0), 1: (2, 0, 1.0), 2: (2, 0, 1.0), 3: (2, 1, 0.5), 4: (1, 1, 0.0)},
}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("worked_example")
    raw = Path(__file__).parent / "fixtures" / "worked_example"
    result = run_job(raw, workdir, as_of=AS_OF)
    assert result.success
    return workdir


def _cells(frame: pl.DataFrame, basis: str) -> dict[tuple[str, int], tuple[int, int, float]]:
    rows = frame.filter(pl.col("basis") == basis).iter_rows(named=True)
    return {
        (row["cohort_month"].strftime("%Y-%m"), row["months_since_signup"]): (
            row["cohort_size"],
            row["active_customers"],
            row["revenue"],
        )
        for row in rows
    }


@pytest.mark.parametrize("basis, expected", [("subscription", SUBSCRIPTION_COHORTS), ("orders", ORDER_COHORTS)])
def test_cohort_retention_cells(published: Path, basis: str, expected: dict) -> None:
    frame = pl.read_parquet(published / "marts" / "cohort_retention.parquet")
    cells = _cells(frame, basis)
    assert cells.keys() == expected.keys()  # no censored cell is published
    for key, (size, active, revenue) in expected.items():
        assert cells[key][:2] == (size, active), key
        assert cells[key][2] == pytest.approx(revenue), key


def test_cohort_retention_rates(published: Path) -> None:
    frame = pl.read_parquet(published / "marts" / "cohort_retention.parquet")
    row = frame.filter(
        (pl.col("basis") == "subscription") & (pl.col("cohort_month") == date(2024, 2, 1)) & (pl.col("months_since_signup") == 1)
    ).row(0, named=True)
    assert row["retention_rate"] == pytest.approx(1.0)
    assert row["revenue_retention"] == pytest.approx(40 / 70)
    january_k1 = frame.filter((pl.col("basis") == "orders") & (pl.col("months_since_signup") == 1)).row(0, named=True)
    assert january_k1["retention_rate"] == 0
    assert january_k1["revenue_retention"] == 0


@pytest.mark.parametrize("basis", ["subscription", "orders"])
def test_retention_curve(published: Path, basis: str) -> None:
    frame = pl.read_parquet(published / "marts" / "retention_curve.parquet").filter(pl.col("basis") == basis)
    got = {row["months_since_signup"]: row for row in frame.iter_rows(named=True)}
    assert got.keys() == CURVE[basis].keys()
    for k, (at_risk, churned, surv) in CURVE[basis].items():
        assert (got[k]["at_risk"], got[k]["churned"]) == (at_risk, churned), k
        assert got[k]["hazard"] == pytest.approx(churned / at_risk)
        assert got[k]["survival"] == pytest.approx(surv)
        assert got[k]["survival_ci_low"] <= got[k]["survival"] <= got[k]["survival_ci_high"]


def test_warehouse_holds_the_same_tables_as_parquet(published: Path) -> None:
    with duckdb.connect(str(published / "warehouse.duckdb"), read_only=True) as conn:
        conn.execute("set TimeZone = 'UTC'")  # as_of, a TIMESTAMPTZ, arrives in the session's zone
        for table in ("cohort_retention", "retention_curve", "high_risk_months"):
            in_warehouse = conn.sql(f"select * from marts.{table}").pl()
            in_parquet = pl.read_parquet(published / "marts" / f"{table}.parquet")
            assert in_warehouse.equals(in_parquet), table
        assert conn.sql("select count(*) from marts.quarantine").fetchall() == [(0,)]
        assert conn.sql("select last_complete_month from staging.int_observation_window").fetchall() == [(date(2024, 6, 1),)]


def test_parquet_carries_contract_version_and_as_of(published: Path) -> None:
    metadata = pq.read_schema(published / "marts" / "cohort_retention.parquet").metadata
    assert metadata[b"churn_pipeline.contract_version"] == b"1"
    assert metadata[b"churn_pipeline.as_of"].startswith(b"2024-07-10T00:00:00")
    assert metadata[b"churn_pipeline.last_complete_month"] == b"2024-06-01"


def _table(published: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(published / "marts" / f"{name}.parquet")


def test_churn_by_cohort(published: Path) -> None:
    frame = _table(published, "churn_by_cohort")
    got = {
        (r["basis"], r["cohort_month"].strftime("%Y-%m")): (r["customers_churned"], r["customer_months"])
        for r in frame.iter_rows(named=True)
    }
    assert got == {
        ("subscription", "2024-01"): (2, 3),
        ("subscription", "2024-02"): (1, 8),
        ("subscription", "2024-03"): (0, 4),
        ("orders", "2024-01"): (2, 9),
    }
    january = frame.filter((pl.col("basis") == "subscription") & (pl.col("cohort_month") == date(2024, 1, 1))).row(0, named=True)
    assert january["monthly_churn_rate"] == pytest.approx(2 / 3)
    assert (january["retention_m1"], january["retention_m3"], january["retention_m6"]) == (0.0, 0.5, None)


def test_churn_by_channel(published: Path) -> None:
    frame = _table(published, "churn_by_channel").filter(pl.col("basis") == "subscription")
    got = {
        r["channel"]: (r["customers"], r["customers_churned"], r["customer_months"], r["retention_m3"])
        for r in frame.iter_rows(named=True)
    }
    assert got == {"ads": (1, 1, 2, 0.0), "organic": (2, 1, 6, 0.5), "referral": (1, 1, 3, 0.0), "unknown": (1, 0, 4, 1.0)}
    unknown = frame.filter(pl.col("channel") == "unknown").row(0, named=True)
    assert unknown["retention_m6"] is None  # all its customers censored by then
    ads = frame.filter(pl.col("channel") == "ads").row(0, named=True)
    assert ads["rate_ratio_vs_others"] == pytest.approx((1 / 2) / (2 / 13))


SUBSCRIPTION_MONTHS = {
    "2024-01": ((0, 2, 0, 1, 1), (70, 0, 0, 50, 0), (0, 1)),
    "2024-02": ((1, 2, 0, 1, 2), (70, 0, 0, 20, 0), (1, 0)),
    "2024-03": ((2, 1, 1, 0, 4), (20, 0, 30, 0, 20), (0, 0)),
    "2024-04": ((4, 0, 0, 1, 3), (0, 0, 0, 20, 0), (1, 0)),
    "2024-05": ((3, 0, 0, 0, 3), (0, 0, 0, 0, 0), (0, 0)),
    "2024-06": ((3, 0, 0, 0, 3), (0, 0, 0, 0, 0), (0, 0)),
}
ORDER_MONTHS = {
    "2024-01": (0, 2, 0, 0, 2),
    "2024-02": (2, 0, 0, 0, 2),
    "2024-03": (2, 0, 0, 0, 2),
    "2024-04": (2, 0, 0, 1, 1),
    "2024-05": (1, 0, 1, 1, 1),
    "2024-06": (1, 0, 0, 0, 1),
}
MOVES = ["customers_start", "new_customers", "reactivated", "churned", "customers_end"]
MRR = ["new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "reactivation_mrr"]


def test_churn_by_month_subscription(published: Path) -> None:
    frame = _table(published, "churn_by_month").filter(pl.col("basis") == "subscription")
    assert [m.strftime("%Y-%m") for m in frame["month"]] == list(SUBSCRIPTION_MONTHS)
    for row in frame.iter_rows(named=True):
        moves, mrr, kinds = SUBSCRIPTION_MONTHS[row["month"].strftime("%Y-%m")]
        assert tuple(row[c] for c in MOVES) == moves, row["month"]
        assert tuple(row[c] for c in MRR) == pytest.approx(mrr), row["month"]
        assert (row["voluntary_churned"], row["involuntary_churned"]) == kinds, row["month"]
    february = frame.filter(pl.col("month") == date(2024, 2, 1)).row(0, named=True)
    assert (february["trials_started"], february["trials_converted"]) == (1, 1)
    assert february["customer_churn_rate"] == pytest.approx(1.0)
    march = frame.filter(pl.col("month") == date(2024, 3, 1)).row(0, named=True)
    assert (march["mrr_start"], march["mrr_end"]) == (pytest.approx(70), pytest.approx(80))
    assert march["gross_mrr_churn_rate"] == pytest.approx(30 / 70)
    assert march["net_mrr_churn_rate"] == pytest.approx((30 - 20) / 70)


def test_churn_by_month_orders(published: Path) -> None:
    frame = _table(published, "churn_by_month").filter(pl.col("basis") == "orders")
    got = {row["month"].strftime("%Y-%m"): tuple(row[c] for c in MOVES) for row in frame.iter_rows(named=True)}
    assert got == ORDER_MONTHS
    january = frame.filter(pl.col("month") == date(2024, 1, 1)).row(0, named=True)
    assert (january["revenue"], january["new_customer_revenue"], january["existing_customer_revenue"]) == (60, 60, 0)
    march = frame.filter(pl.col("month") == date(2024, 3, 1)).row(0, named=True)
    assert (march["revenue"], march["existing_customer_revenue"]) == (30, 30)
    assert frame["voluntary_churned"].null_count() == frame.height


def test_reactivation_in_the_worked_example(published: Path) -> None:
    frame = _table(published, "churn_reactivation").filter(pl.col("dimension") == "all")
    orders = frame.filter(pl.col("basis") == "orders").row(0, named=True)
    # b2 churned on 2 April and came back on 20 May (48 days); b1 churned on 31 May, 40 days before as_of
    assert (orders["churns"], orders["returned_ever"], orders["median_days_to_return"]) == (2, 1, 48.0)
    assert (orders["churns_observed_30d"], orders["returned_30d"]) == (2, 0)
    assert (orders["churns_observed_60d"], orders["returned_60d"]) == (1, 1)
