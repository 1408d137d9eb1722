"""Cohorts and the retention curve on hand-worked fixtures and planted patterns."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from churn_pipeline.lib.generate import GeneratorConfig, generate
from helpers import Built, write_raw

# Reporting zone New York; as_of 2024-05-15T00:00Z is 14 May 20:00 there: last complete month April.
# a1 signs up 1 Feb 03:00 UTC = 31 Jan 22:00 in New York (January cohort), cancels in February
#    (lifetime month 1) and reactivates in March (month 2).
# a2 churns in its signup month. a3 cancels on 5 May, in the incomplete month: censored.
# a4 changes plan at 1 Mar 02:00 UTC = 29 Feb 21:00 in New York, so February ends at MRR 30.
EVENTS = """
event_id,customer_id,occurred_at,event_type,plan,price
e1,a1,2024-02-01T03:00:00Z,subscribed,basic,20
e2,a1,2024-02-15T12:00:00Z,cancelled,,
e3,a1,2024-03-10T12:00:00Z,reactivated,basic,20
e4,a2,2024-01-15T12:00:00Z,subscribed,basic,20
e5,a2,2024-01-20T12:00:00Z,cancelled,,
e6,a3,2024-02-10T12:00:00Z,subscribed,basic,20
e7,a3,2024-05-05T12:00:00Z,cancelled,,
e8,a4,2024-02-20T12:00:00Z,subscribed,pro,40
e9,a4,2024-03-01T02:00:00Z,plan_changed,mid,30
"""


@pytest.fixture(scope="module")
def new_york(tmp_path_factory: pytest.TempPathFactory) -> Built:
    raw = write_raw(tmp_path_factory.mktemp("ny"), {"subscription_events.csv": EVENTS})
    return Built(raw, timezone="America/New_York", as_of="2024-05-15T00:00:00Z")


def test_cohort_cells_in_a_non_utc_zone(new_york: Built) -> None:
    assert new_york.last_complete_month == date(2024, 4, 1)
    cells = {
        (row[1].strftime("%Y-%m"), row[2]): row[3:]
        for row in new_york.cohort_retention()
        .select("basis", "cohort_month", "months_since_signup", "cohort_size", "active_customers", "revenue")
        .iter_rows()
    }
    assert cells == {
        ("2024-01", 0): (2, 1, 20.0),
        ("2024-01", 1): (2, 0, 0.0),
        ("2024-01", 2): (2, 1, 20.0),
        ("2024-01", 3): (2, 1, 20.0),
        ("2024-02", 0): (2, 2, 50.0),
        ("2024-02", 1): (2, 2, 50.0),
        ("2024-02", 2): (2, 2, 50.0),
    }


def test_curve_censors_a_churn_in_the_incomplete_month(new_york: Built) -> None:
    curve = new_york.retention_curve().select("months_since_signup", "at_risk", "churned", "survival").rows()
    assert curve == [(0, 4, 1, 0.75), (1, 3, 1, pytest.approx(0.5)), (2, 2, 0, pytest.approx(0.5))]


def test_the_same_events_in_utc_move_a1_to_february(tmp_path: Path) -> None:
    raw = write_raw(tmp_path, {"subscription_events.csv": EVENTS})
    built = Built(raw, timezone="UTC", as_of="2024-05-15T00:00:00Z")
    sizes = dict(built.cohort_retention().filter(pl.col("months_since_signup") == 0).select("cohort_month", "cohort_size").rows())
    assert sizes == {date(2024, 1, 1): 1, date(2024, 2, 1): 3}
    feb_k0 = (
        built.cohort_retention()
        .filter((pl.col("cohort_month") == date(2024, 2, 1)) & (pl.col("months_since_signup") == 0))
        .row(0, named=True)
    )
    # a1 cancelled on 15 February; a4 still pays 40 at the end of February (its change is in March in UTC)
    assert (feb_k0["active_customers"], feb_k0["revenue"]) == (2, pytest.approx(20 + 40))


def test_orders_cells_count_refunds_as_revenue_not_activity(tmp_path: Path) -> None:
    # b1's January refund comes before its first positive order (February): not part of its cohort.
    # Its March refund is net revenue of lifetime month 1, but no activity.
    raw = write_raw(
        tmp_path,
        {
            "orders.csv": """
        order_id,customer_id,ordered_at,amount
        o1,b1,2024-01-10T00:00:00Z,-5
        o2,b1,2024-02-10T00:00:00Z,10
        o3,b1,2024-03-10T00:00:00Z,-3
        o4,b1,2024-04-10T00:00:00Z,7
        o5,b2,2024-02-20T00:00:00Z,4
        """
        },
    )
    built = Built(raw, as_of="2024-06-01T00:00:00Z")
    cells = (
        built.cohort_retention()
        .filter(pl.col("basis") == "orders")
        .select("cohort_month", "months_since_signup", "cohort_size", "active_customers", "revenue")
        .rows()
    )
    assert cells == [
        (date(2024, 2, 1), 0, 2, 2, 14.0),
        (date(2024, 2, 1), 1, 2, 0, -3.0),
        (date(2024, 2, 1), 2, 2, 1, 7.0),
        (date(2024, 2, 1), 3, 2, 0, 0.0),
    ]


def test_an_order_exactly_inactivity_days_later_continues_the_spell(tmp_path: Path) -> None:
    # 90 days are exact (86,400 s each, in UTC): b1's second order is exactly 90 days after its
    # first, so one spell; b2's comes a microsecond later, so b2 churns and comes back. b3 does the
    # same before 1970, where epoch times are negative; its second spell churns by as_of.
    raw = write_raw(
        tmp_path,
        {
            "orders.csv": """
        order_id,customer_id,ordered_at,amount
        o1,b1,2024-01-10T10:00:00.000001Z,10
        o2,b1,2024-04-09T10:00:00.000001Z,10
        o3,b2,2024-01-10T10:00:00Z,10
        o4,b2,2024-04-09T10:00:00.000001Z,10
        o5,b3,1969-11-01T00:00:00Z,10
        o6,b3,1970-01-30T00:00:00.5Z,10
        """
        },
    )
    built = Built(raw, as_of="2024-06-01T00:00:00Z")
    spells = built.sql("""
        select customer_id, spell_number, spell_start_at, spell_end_at
        from staging.int_customer_spells order by customer_id, spell_number
    """).rows()
    utc = ZoneInfo("UTC")
    assert spells == [
        ("b1", 1, datetime(2024, 1, 10, 10, 0, 0, 1, tzinfo=utc), None),
        ("b2", 1, datetime(2024, 1, 10, 10, tzinfo=utc), datetime(2024, 4, 9, 10, tzinfo=utc)),
        ("b2", 2, datetime(2024, 4, 9, 10, 0, 0, 1, tzinfo=utc), None),
        ("b3", 1, datetime(1969, 11, 1, tzinfo=utc), datetime(1970, 1, 30, tzinfo=utc)),
        ("b3", 2, datetime(1970, 1, 30, 0, 0, 0, 500000, tzinfo=utc), datetime(1970, 4, 30, 0, 0, 0, 500000, tzinfo=utc)),
    ]


def test_default_as_of_is_the_latest_valid_event(tmp_path: Path) -> None:
    raw = write_raw(tmp_path, {"subscription_events.csv": EVENTS})
    built = Built(raw)
    assert built.sql("select as_of from staging.int_observation_window").item() == datetime(
        2024, 5, 5, 12, tzinfo=ZoneInfo("UTC")
    )
    assert built.last_complete_month == date(2024, 4, 1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("generated")
    generate(raw, GeneratorConfig(customers=1500, months=18, seed=11))
    return raw


def _expected_cohorts(raw: Path, zone: str) -> dict[date, int]:
    """Cohort sizes computed independently: first `subscribed` per customer, read with Python's parser."""
    events = pl.concat([pl.read_csv(p, infer_schema=False) for p in sorted(raw.glob("subscription_events*.csv"))])
    first = events.filter(pl.col("event_type") == "subscribed").group_by("customer_id").agg(pl.col("occurred_at"))
    counts: dict[date, int] = {}
    for stamps in first["occurred_at"]:
        instants = [
            datetime.fromisoformat(s.replace("Z", "+00:00"))
            if ("Z" in s or "+" in s[10:] or s[-6] == "-")
            else datetime.fromisoformat(s).replace(tzinfo=ZoneInfo("UTC"))
            for s in stamps
        ]
        local = min(instants).astimezone(ZoneInfo(zone))
        month = date(local.year, local.month, 1)
        counts[month] = counts.get(month, 0) + 1
    return counts


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai"])
def test_cohort_sizes_follow_the_reporting_zone(generated: Path, zone: str) -> None:
    built = Built(generated, timezone=zone)
    published = dict(
        built.cohort_retention()
        .filter((pl.col("basis") == "subscription") & (pl.col("months_since_signup") == 0))
        .select("cohort_month", "cohort_size")
        .rows()
    )
    expected = {m: n for m, n in _expected_cohorts(generated, zone).items() if m <= built.last_complete_month}
    assert published == expected


def test_shanghai_moves_late_evening_utc_signups_to_the_next_month(generated: Path) -> None:
    utc = _expected_cohorts(generated, "UTC")
    shanghai = _expected_cohorts(generated, "Asia/Shanghai")
    assert utc != shanghai and sum(utc.values()) == sum(shanghai.values())


def _shuffled_copy(source: Path, target: Path, seed: int) -> Path:
    target.mkdir()
    for index, path in enumerate(sorted(source.glob("*.csv"))):
        frame = pl.read_csv(path, infer_schema=False)
        renamed = path.name.replace("part1", f"z{seed}").replace("part2", f"a{seed}")
        frame.sample(fraction=1.0, shuffle=True, seed=seed + index).write_csv(target / renamed)
    return target


def test_results_do_not_depend_on_row_or_file_order(generated: Path, tmp_path: Path) -> None:
    shuffled = _shuffled_copy(generated, tmp_path / "shuffled", seed=3)
    a, b = Built(generated).published_tables(), Built(shuffled).published_tables()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equals(b[name]), name
