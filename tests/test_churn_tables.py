"""Churn tables on a hand-worked fixture and on the generator's planted patterns."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from churn_pipeline.lib import churn_tables
from churn_pipeline.lib.generate import GeneratorConfig, generate
from churn_pipeline.lib.price_changes import churn_by_price_change
from helpers import Built, write_raw

# as_of 15 June 2024 (UTC): last complete month May.
# d1 signs up and cancels in January. d2 upgrades basic -> pro in February, downgrades in March.
# d3 pays 600 a year (MRR 50). d4's failed payment recovers; d5's expires in March (involuntary).
# d6 cancels on 1 February and reactivates 45 days later, on 17 March.
EVENTS = """
event_id,customer_id,occurred_at,event_type,plan,price,billing_period,channel,segment
a1,d1,2024-01-05T10:00:00Z,subscribed,basic,20,month,ads,smb
a2,d1,2024-01-25T10:00:00Z,cancelled,,,,,
b1,d2,2024-01-10T10:00:00Z,subscribed,basic,20,month,organic,enterprise
b2,d2,2024-02-10T10:00:00Z,plan_changed,pro,50,month,,
b3,d2,2024-03-10T10:00:00Z,plan_changed,basic,20,month,,
c1,d3,2024-02-01T10:00:00Z,subscribed,pro_annual,600,year,organic,enterprise
f1,d4,2024-01-15T10:00:00Z,subscribed,basic,20,month,ads,smb
f2,d4,2024-02-14T10:00:00Z,payment_failed,,,,,
f3,d4,2024-02-16T10:00:00Z,renewed,,,,,
g1,d5,2024-01-20T10:00:00Z,subscribed,basic,20,month,ads,smb
g2,d5,2024-03-18T10:00:00Z,payment_failed,,,,,
g3,d5,2024-03-20T10:00:00Z,expired,,,,,
h1,d6,2024-01-03T10:00:00Z,subscribed,basic,20,month,referral,smb
h2,d6,2024-02-01T10:00:00Z,cancelled,,,,,
h3,d6,2024-03-17T10:00:00Z,reactivated,basic,20,month,,
"""
# month: (customers_start, new, reactivated, churned, end), (new, expansion, contraction, churned, reactivation MRR),
#        (voluntary, involuntary), (mrr_start, mrr_end)
EXPECTED = {
    date(2024, 1, 1): ((0, 5, 0, 1, 4), (100, 0, 0, 20, 0), (1, 0), (0, 80)),
    date(2024, 2, 1): ((4, 1, 0, 1, 4), (50, 30, 0, 20, 0), (1, 0), (80, 140)),
    date(2024, 3, 1): ((4, 0, 1, 1, 4), (0, 0, 30, 20, 20), (0, 1), (140, 110)),
    date(2024, 4, 1): ((4, 0, 0, 0, 4), (0, 0, 0, 0, 0), (0, 0), (110, 110)),
    date(2024, 5, 1): ((4, 0, 0, 0, 4), (0, 0, 0, 0, 0), (0, 0), (110, 110)),
}


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Built:
    raw = write_raw(tmp_path_factory.mktemp("hand"), {"subscription_events.csv": EVENTS})
    return Built(raw, as_of="2024-06-15T00:00:00Z")


def test_monthly_movements_and_mrr_bridge(hand: Built) -> None:
    frame = hand.churn_by_month()
    assert frame["month"].to_list() == list(EXPECTED)
    for row in frame.iter_rows(named=True):
        moves, mrr, kinds, stock = EXPECTED[row["month"]]
        assert (row["customers_start"], row["new_customers"], row["reactivated"], row["churned"], row["customers_end"]) == moves
        assert (
            row["new_mrr"],
            row["expansion_mrr"],
            row["contraction_mrr"],
            row["churned_mrr"],
            row["reactivation_mrr"],
        ) == pytest.approx(mrr)
        assert (row["voluntary_churned"], row["involuntary_churned"]) == kinds
        assert (row["mrr_start"], row["mrr_end"]) == pytest.approx(stock)
    february = frame.filter(pl.col("month") == date(2024, 2, 1)).row(0, named=True)
    assert february["customer_churn_rate"] == pytest.approx(0.25)
    assert february["gross_mrr_churn_rate"] == pytest.approx(20 / 80)
    assert february["net_mrr_churn_rate"] == pytest.approx((20 - 30) / 80)  # expansion outweighs churn: negative
    assert february["benchmark_band"] == "emergency"


def test_reactivation_after_45_days(hand: Built) -> None:
    frame = churn_tables.churn_reactivation(hand.sql("select * from staging.int_reactivation_counts"))
    overall = frame.filter((pl.col("basis") == "subscription") & (pl.col("dimension") == "all")).row(0, named=True)
    assert (overall["churns"], overall["returned_ever"]) == (3, 1)
    assert (overall["returned_30d"], overall["returned_60d"], overall["returned_90d"]) == (0, 1, 1)
    assert overall["returned_within_60d_share"] == pytest.approx(1 / 3)
    assert overall["median_days_to_return"] == pytest.approx(45.0)
    referral = frame.filter((pl.col("dimension") == "channel") & (pl.col("value") == "referral")).row(0, named=True)
    assert (referral["churns"], referral["returned_60d"]) == (1, 1)


def test_quarter_rollup(hand: Built) -> None:
    monthly = hand.churn_by_month()
    quarters = churn_tables.churn_by_quarter(monthly)
    q1 = quarters.filter(pl.col("quarter") == date(2024, 1, 1)).row(0, named=True)
    assert (q1["customers_start"], q1["new_customers"], q1["churned"], q1["customers_end"]) == (0, 6, 3, 4)
    assert (q1["new_mrr"], q1["mrr_end"]) == (pytest.approx(150), pytest.approx(110))
    assert quarters.height == 1  # April-May is not a complete quarter


def test_segments_plans_and_value_tiers(hand: Built) -> None:
    frame = churn_tables.churn_by_segment(hand.frame("staging.int_survival_counts"))
    plans = dict(frame.filter(pl.col("dimension") == "signup_plan").select("value", "customers").rows())
    assert plans == {"basic": 5, "pro_annual": 1}
    segments = {
        r["value"]: (r["customers"], r["customers_churned"])
        for r in frame.filter(pl.col("dimension") == "segment").iter_rows(named=True)
    }
    assert segments == {"smb": (4, 3), "enterprise": (2, 0)}
    tiers = dict(frame.filter(pl.col("dimension") == "value_tier").select("value", "customers").rows())
    assert tiers == {"Q1 (<= 20.0)": 5, "Q4 (> 20.0)": 1}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Built:
    raw = tmp_path_factory.mktemp("planted")
    generate(raw, GeneratorConfig(customers=20000, months=24, seed=21))
    return Built(raw)


def _by(frame: pl.DataFrame, column: str, basis: str = "subscription") -> dict[str, dict]:
    return {r[column]: r for r in frame.filter(pl.col("basis") == basis).iter_rows(named=True)}


def test_planted_channel_differences(planted: Built) -> None:
    channels = _by(churn_tables.churn_by_channel(planted.frame("staging.int_survival_counts")), "channel")
    assert channels["ads"]["rate_ratio_vs_others"] > 1.3 and channels["ads"]["p_value_vs_others"] < 0.001
    assert channels["referral"]["rate_ratio_vs_others"] < 0.8 and channels["referral"]["p_value_vs_others"] < 0.001
    assert channels["ads"]["rate_ratio_ci_low"] > 1
    assert "unknown" in channels  # 5 % have no channel
    orders = _by(churn_tables.churn_by_channel(planted.frame("staging.int_survival_counts")), "channel", "orders")
    assert orders["ads"]["rate_ratio_vs_others"] > 1 and orders["ads"]["p_value_vs_others"] < 0.001


def test_planted_segment_differences(planted: Built) -> None:
    frame = churn_tables.churn_by_segment(planted.frame("staging.int_survival_counts"))
    segments = _by(frame.filter(pl.col("dimension") == "segment"), "value")
    assert segments["enterprise"]["rate_ratio_vs_others"] < 0.8 and segments["enterprise"]["p_value_vs_others"] < 0.001
    assert segments["smb"]["rate_ratio_vs_others"] > 1.1 and segments["smb"]["p_value_vs_others"] < 0.001


def test_planted_price_changes(planted: Built) -> None:
    frame = churn_by_price_change(
        planted.frame("staging.int_price_change_exposure"), planted.frame("staging.int_signup_counts"), 3
    )
    config = GeneratorConfig(customers=20000, months=24, seed=21)
    start = date(2023, 1, 1)
    existing = frame.filter(pl.col("change_kind") == "existing_customers").row(0, named=True)
    assert (existing["plan"], existing["old_price"], existing["new_price"]) == ("basic", 20.0, 25.0)
    assert existing["change_month"] == date(
        start.year + config.price_increase_month // 12, 1 + config.price_increase_month % 12, 1
    )
    assert existing["price_change_pct"] == pytest.approx(0.25)
    assert existing["lift"] > 1.3 and existing["relative_lift"] > 1.3 and existing["p_value"] < 0.001
    new = frame.filter(pl.col("change_kind") == "new_signups").row(0, named=True)
    assert (new["plan"], new["old_price"], new["new_price"]) == ("pro", 50.0, 60.0)
    assert new["change_month"] == date(2024, 1, 1)  # month 12 of history
    assert new["lift"] > 1.1 and new["p_value_after_vs_before"] < 0.05
    assert frame.height == 2  # plan changes by customers are not price changes


def test_identities_hold_on_messy_data(tmp_path: Path) -> None:
    generate(tmp_path, GeneratorConfig(customers=3000, months=18, seed=8, messy_share=0.05, file_format="mixed"))
    monthly = Built(tmp_path).churn_by_month()
    customers = monthly.filter(
        pl.col("customers_end") != pl.col("customers_start") + pl.col("new_customers") + pl.col("reactivated") - pl.col("churned")
    )
    assert customers.is_empty()
    mrr = monthly.filter(pl.col("basis") == "subscription").with_columns(
        (
            pl.col("mrr_start")
            + pl.col("new_mrr")
            + pl.col("expansion_mrr")
            + pl.col("reactivation_mrr")
            - pl.col("contraction_mrr")
            - pl.col("churned_mrr")
            - pl.col("mrr_end")
        )
        .abs()
        .alias("gap")
    )
    assert mrr["gap"].max() < 0.005
    assert monthly.filter(pl.col("basis") == "subscription")["churned"].sum() > 100
    # the SaaS metrics' identities: ARR = 12 x MRR, ARPA x customers = MRR, GRR <= NRR, and the
    # revenue retention base is the MRR held 12 months earlier
    subscription = monthly.filter(pl.col("basis") == "subscription")
    assert ((subscription["arr"] - 12 * subscription["mrr_end"]).abs() < 1e-6).all()
    assert ((subscription["arpa"] * subscription["customers_end"] - subscription["mrr_end"]).abs() < 1e-3).all()
    retained = subscription.drop_nulls("net_revenue_retention_12m")
    assert retained.height == subscription.height - 12 > 0
    assert (retained["gross_revenue_retention_12m"] <= retained["net_revenue_retention_12m"]).all()
    assert (retained["gross_revenue_retention_12m"] <= 1).all()
    metrics = ["arr", "arpa", "quick_ratio", "ltv", "net_revenue_retention_12m", "gross_revenue_retention_12m"]
    orders = monthly.filter(pl.col("basis") == "orders")
    assert orders.height > 0 and orders.select(pl.col(metrics).is_null().all()).row(0) == (True,) * len(metrics)
    base = Built(tmp_path).sql(
        """select r.mrr_12m_before, m.mrr_end from staging.int_revenue_retention as r
           inner join staging.int_monthly_movements as m
               on m.basis = 'subscription' and m.month = (r.month - interval 12 month)::date"""
    )
    assert base.height == retained.height and ((base["mrr_12m_before"] - base["mrr_end"]).abs() < 1e-6).all()


def test_saas_metrics_on_the_worked_example(worked_example_dir: Path) -> None:
    """Hand-worked from contract section 5 (subscription basis, UTC): end-of-month customers and
    MRR Jan 1/20, Feb 2/70, Mar 4/80, Apr-Jun 3/60; MRR gained / lost Jan 70/50, Feb 70/20,
    Mar 40/30, Apr 0/20, then nothing; churn rates Feb 1/1, Mar 0/2, Apr 1/4, May-Jun 0."""
    monthly = Built(worked_example_dir, as_of="2024-07-10T00:00:00Z").churn_by_month()
    rows = {row["month"].month: row for row in monthly.filter(pl.col("basis") == "subscription").iter_rows(named=True)}
    expected = {  # month: arr, arpa, quick_ratio, ltv
        1: (240, 20, 1.4, None),  # no customers at the start: no churn rate
        2: (840, 35, 3.5, 35),
        3: (960, 20, 40 / 30, None),  # no churn
        4: (720, 20, 0, 80),
        5: (720, 20, None, None),  # nothing lost, no churn
        6: (720, 20, None, None),
    }
    for month, values in expected.items():
        got = tuple(rows[month][c] for c in ("arr", "arpa", "quick_ratio", "ltv"))
        assert [g is None for g in got] == [v is None for v in values], month
        assert [g for g in got if g is not None] == pytest.approx([v for v in values if v is not None], rel=1e-6), month
        # fewer than 12 months of history
        assert rows[month]["net_revenue_retention_12m"] is None and rows[month]["gross_revenue_retention_12m"] is None


# 14 months to as_of 2024-03-15 (last complete month February 2024). At the end of January 2023
# x1 (20), x2 (50), x3 (20) and x5 (20) hold MRR; x4 joins in February 2023, x5 leaves in March.
# By 2024: x1 expanded to 50, x2 contracted to 20, x3 churned, x5 came back at 20, x4 still 20.
RETENTION_EVENTS = """
event_id,customer_id,occurred_at,event_type,plan,price,billing_period
a1,x1,2023-01-10T10:00:00Z,subscribed,basic,20,month
a2,x1,2023-06-10T10:00:00Z,plan_changed,pro,50,month
b1,x2,2023-01-15T10:00:00Z,subscribed,pro,50,month
b2,x2,2023-09-15T10:00:00Z,plan_changed,basic,20,month
c1,x3,2023-01-20T10:00:00Z,subscribed,basic,20,month
c2,x3,2023-05-20T10:00:00Z,cancelled,,,
d1,x4,2023-02-05T10:00:00Z,subscribed,basic,20,month
e1,x5,2023-01-25T10:00:00Z,subscribed,basic,20,month
e2,x5,2023-03-25T10:00:00Z,cancelled,,,
e3,x5,2023-11-25T10:00:00Z,reactivated,basic,20,month
"""


def test_net_and_gross_revenue_retention_over_12_months(tmp_path: Path) -> None:
    raw = write_raw(tmp_path, {"subscription_events.csv": RETENTION_EVENTS})
    monthly = Built(raw, as_of="2024-03-15T00:00:00Z").churn_by_month().filter(pl.col("basis") == "subscription")
    retention = {
        row["month"]: (row["net_revenue_retention_12m"], row["gross_revenue_retention_12m"])
        for row in monthly.iter_rows(named=True)
    }
    assert len(retention) == 14
    # January 2024: then 20 + 50 + 20 + 20 = 110; now 50 + 20 + 0 + 20 = 90; capped 20 + 20 + 0 + 20 = 60
    assert retention[date(2024, 1, 1)] == pytest.approx((90 / 110, 60 / 110))
    # February 2024: x4 joins the base (130); now 110; capped 80
    assert retention[date(2024, 2, 1)] == pytest.approx((110 / 130, 80 / 130))
    assert all(value == (None, None) for month, value in retention.items() if month < date(2024, 1, 1))


def test_downgrade_counts_as_churn_when_configured(tmp_path: Path) -> None:
    raw = write_raw(tmp_path, {"subscription_events.csv": EVENTS})
    built = Built(raw, as_of="2024-06-15T00:00:00Z", downgrade_is_churn=True)
    march = built.churn_by_month().filter(pl.col("month") == date(2024, 3, 1)).row(0, named=True)
    # d2's move from pro to basic is now a churn; its February upgrade, while active, started nothing
    assert (march["churned"], march["downgrade_churned"], march["involuntary_churned"], march["customers_end"]) == (2, 1, 1, 3)
    assert march["contraction_mrr"] == pytest.approx(30)  # money still moves as a contraction
    d2 = built.sql("select first_churn_kind, first_churn_lifetime_month from staging.int_customers where customer_id = 'd2'").row(
        0
    )
    assert d2 == ("downgrade", 2)
    default = Built(raw, as_of="2024-06-15T00:00:00Z")
    assert default.sql("select first_churn_kind from staging.int_customers where customer_id = 'd2'").item() is None


# basic goes from 20 to 25 in April 2024 (p1 and p5 repriced); windows: Jan-Mar before, Apr-Jun after.
# p2 churns in February. p3 subscribes to pro and moves to basic at the same instant: basic when
# each month starts, though not repriced (so in no "after" group). p4 stays on pro and cancels at
# exactly 1 May 00:00: at risk in May and churned in it. p5 joins in February: at risk from March.
# p6 starts at exactly 1 March 00:00: not at risk in March, and not repriced.
PRICE_CHANGE_EVENTS = """
event_id,customer_id,occurred_at,event_type,plan,price,billing_period
e1,p1,2023-12-10T10:00:00Z,subscribed,basic,20,month
e2,p1,2024-04-05T10:00:00Z,price_changed,basic,25,month
e3,p2,2023-12-15T10:00:00Z,subscribed,basic,20,month
e4,p2,2024-02-20T10:00:00Z,cancelled,,,
e5,p3,2023-12-01T00:00:00Z,subscribed,pro,50,month
e6,p3,2023-12-01T00:00:00Z,plan_changed,basic,20,month
e7,p4,2023-10-01T10:00:00Z,subscribed,pro,50,month
e8,p4,2024-05-01T00:00:00Z,cancelled,,,
e9,p5,2024-02-10T10:00:00Z,subscribed,basic,20,month
e10,p5,2024-04-05T11:00:00Z,price_changed,basic,25,month
e11,p6,2024-03-01T00:00:00Z,subscribed,basic,20,month
"""


def test_price_change_exposure_by_hand(tmp_path: Path) -> None:
    built = Built(write_raw(tmp_path, {"subscription_events.csv": PRICE_CHANGE_EVENTS}), as_of="2024-07-15T00:00:00Z")
    rows = built.sql("""
        select plan, change_month, old_price, new_price, customers_affected, role, period, customer_months, churned, months_observed
        from staging.int_price_change_exposure order by role, period
    """).rows()
    april = date(2024, 4, 1)
    assert rows == [
        # after: p1 and p5 in April, May and June
        ("basic", april, 20.0, 25.0, 2, "affected", "after", 6, 0, 3),
        # before: p1 and p3 in Jan-Mar, p2 in Jan and Feb (churned in Feb), p5 in March
        ("basic", april, 20.0, 25.0, 2, "affected", "before", 9, 1, 3),
        # p4 in April and May (churned in May)
        ("basic", april, 20.0, 25.0, 2, "unaffected", "after", 2, 1, 2),
        ("basic", april, 20.0, 25.0, 2, "unaffected", "before", 3, 0, 3),
    ]
