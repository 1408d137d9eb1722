"""Raw ingestion: every row is loaded or quarantined with a reason; times land as UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from churn_pipeline.lib import ingest, sql_models
from churn_pipeline.lib.ingest import RawInputError, preflight
from churn_pipeline.lib.raw_sources import SOURCES
from helpers import Built, sql_parameters, write_raw

ORDERS = """
order_id,customer_id,ordered_at,amount,currency,channel
o1,c1,2024-01-31T23:30:00-05:00,10,,ads
o2,c1,2024-02-01T10:00:00Z,5,EUR,
o3,c2,2024-03-01 12:00:00,7,,
o1,c1,2024-01-31T23:30:00-05:00,10,,ads
,c3,2024-01-01T00:00:00Z,1,,
o5,,2024-01-01T00:00:00Z,1,,
o6,c3,,1,,
o7,c3,2024-01-01T00:00:00Z,,,
o8,c3,yesterday,1,,
o9,c3,2024-01-01T00:00:00Z,ten,,
o10,c3,2024-01-01T00:00:00Z,NaN,,
o11,c3,2024-01-01T00:00:00Z,1,EURO,
o12,c3,2024-01-01T00:00:00Z,1,JPY,
o13,c4,2024-02-10T00:00:00+09:00,-3,,
"""
ORDER_REASONS = {
    "duplicate order_id": 1,
    "missing order_id": 1,
    "missing customer_id": 1,
    "missing ordered_at": 1,
    "missing amount": 1,
    "unparseable ordered_at": 1,
    "unparseable amount": 2,
    "invalid currency code": 1,
    "no fx rate for currency JPY": 1,
}
EVENTS = """
event_id,customer_id,occurred_at,event_type,plan,price,billing_period,currency,channel,segment
e1,c1,2024-01-10T00:00:00Z,subscribed,basic,20,month,,ads,smb
e2,c1,2024-01-10T00:00:00Z,subscribed,basic,20,month,,ads,smb
e3,c1,2024-02-10T00:00:00Z,Renewed,,,,,,
e4,c1,2024-02-11T00:00:00Z,subscribed,basic,20,month,,,
e5,c1,2024-02-12T00:00:00Z,cancelled,,,,,,
e6,c1,2024-02-13T00:00:00Z,cancelled,,,,,,
e7,c1,2024-02-14T00:00:00Z,renewed,,,,,,
e8,c1,2024-03-01T00:00:00Z,reactivated,pro,50,month,,,
e9,c1,2024-03-02T00:00:00Z,trial_started,,,,,,
e10,c2,2024-01-01T00:00:00Z,renewed,,,,,,
e11,c2,2024-01-02T00:00:00Z,trial_started,,,,,,
e12,c2,2024-01-03T00:00:00Z,cancelled,,,,,,
e13,c2,2024-01-04T00:00:00Z,cancelled,,,,,,
e14,c2,2024-01-05T00:00:00Z,expired,,,,,,
e15,c3,2024-01-01T00:00:00Z,upgraded,,,,,,
e16,c3,2024-01-01T00:00:00Z,subscribed,,20,month,,,
e17,c3,2024-01-01T00:00:00Z,subscribed,basic,,month,,,
e18,c3,2024-01-01T00:00:00Z,subscribed,basic,-1,month,,,
e19,c3,2024-01-01T00:00:00Z,subscribed,basic,abc,month,,,
e20,c3,2024-01-01T00:00:00Z,subscribed,basic,20,week,,,
e21,c3,2024-01-01T00:00:00Z,subscribed,basic,20,month,GBP,,
e22,c3,not a time,subscribed,basic,20,month,,,
e23,,2024-01-01T00:00:00Z,subscribed,basic,20,month,,,
e24,c4,2024-01-01T00:00:00Z,subscribed,basic,200,year,EUR,,
"""
EVENT_REASONS = {
    "duplicate event_id": 0,
    "subscribed while already subscribed": 2,
    "cancelled with no active subscription": 1,
    "renewed with no active subscription": 1,
    "trial_started after the customer's first subscribed": 1,
    "renewed before the customer's first subscribed": 1,
    "cancelled before the customer's first subscribed": 1,
    "expired before the customer's first subscribed": 1,
    "unknown event_type": 1,
    "missing plan for subscribed": 1,
    "missing price for subscribed": 1,
    "negative price": 1,
    "unparseable price": 1,
    "unknown billing_period": 1,
    "no fx rate for currency GBP": 1,
    "unparseable occurred_at": 1,
    "missing customer_id": 1,
}
FX = """
currency,rate_to_reporting,month
EUR,1.10,
EUR,1.20,2024-02
eur,1.30,2024-02-01
US,1,
GBP,0,
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    raw = write_raw(
        tmp_path_factory.mktemp("raw"),
        {"orders.csv": ORDERS, "subscription_events.csv": EVENTS, "fx_rates.csv": FX},
    )
    return Built(raw)


def _reasons(built: Built, source: str) -> dict[str, int]:
    frame = built.sql("select reason, count(*) as n from marts.quarantine where source = $s group by reason", {"s": source})
    return dict(frame.iter_rows())


def test_every_order_reason_is_quarantined(built: Built) -> None:
    assert _reasons(built, "orders") == ORDER_REASONS
    loaded = built.sql("select order_id from staging.int_orders order by order_id")["order_id"].to_list()
    assert loaded == ["o1", "o13", "o2", "o3"]


def test_every_event_reason_is_quarantined(built: Built) -> None:
    expected = {reason: n for reason, n in EVENT_REASONS.items() if n}
    assert _reasons(built, "subscription_events") == expected
    loaded = built.sql("select event_id from staging.int_subscription_events order by event_seq, customer_id")
    assert sorted(loaded["event_id"].to_list()) == sorted(["e1", "e3", "e5", "e8", "e11", "e12", "e24"])


def test_fx_rates_checked(built: Built) -> None:
    assert _reasons(built, "fx_rates") == {
        "duplicate currency and month": 1,
        "invalid currency code": 1,
        "rate_to_reporting must be positive": 1,
    }


@pytest.mark.parametrize(
    "source, loaded_table",
    [
        ("orders", "staging.int_orders"),
        ("subscription_events", "staging.int_subscription_events"),
        ("subscription_events", "staging.int_subscription_event_states"),
        ("fx_rates", "staging.int_fx_rates"),
    ],
)
def test_raw_rows_equal_loaded_plus_quarantined(built: Built, source: str, loaded_table: str) -> None:
    raw = built.sql(f"select count(*) as n from raw.{source}").item()
    loaded = built.sql(f"select count(*) as n from {loaded_table}").item()
    quarantined = built.sql("select count(*) from marts.quarantine where source = $s", {"s": source}).item()
    assert raw == loaded + quarantined


def test_quarantine_keeps_file_row_and_raw_values(built: Built) -> None:
    row = built.sql("select * from marts.quarantine where reason = 'unparseable ordered_at'").row(0, named=True)
    assert row["source_file"] == "orders.csv"
    assert row["source_row"] == 9  # ninth data row of the file
    assert '"ordered_at":"yesterday"' in row["raw_values"]


def test_offsets_land_as_utc_instants_across_a_month_boundary(built: Built) -> None:
    times = dict(built.sql("select order_id, ordered_at from staging.int_orders").iter_rows())
    assert times["o1"] == datetime(2024, 2, 1, 4, 30, tzinfo=UTC)
    assert times["o13"] == datetime(2024, 2, 9, 15, 0, tzinfo=UTC)
    assert times["o3"] == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)  # naive = source zone UTC


def test_fx_rate_for_the_month_wins_over_the_general_rate(built: Built) -> None:
    amounts = dict(built.sql("select order_id, amount from staging.int_orders").iter_rows())
    assert amounts["o2"] == pytest.approx(5 * 1.20)
    mrr = built.sql("select mrr from staging.int_subscription_events where event_id = 'e24'").item()
    assert mrr == pytest.approx(200 * 1.10 / 12)


def test_naive_timestamps_use_the_source_timezone(tmp_path: Path) -> None:
    raw = write_raw(
        tmp_path,
        {
            "orders.csv": """
        order_id,customer_id,ordered_at,amount
        o1,c1,2024-01-31 20:00:00,10
        o2,c1,2024-07-01 01:00:00,10
        """
        },
    )
    built = Built(raw, source_timezone="America/New_York")
    times = built.sql("select ordered_at from staging.int_orders order by order_id")["ordered_at"].to_list()
    assert times == [
        datetime(2024, 2, 1, 1, 0, tzinfo=UTC),  # EST, UTC-5
        datetime(2024, 7, 1, 5, 0, tzinfo=UTC),  # EDT, UTC-4
    ]


def test_csv_and_parquet_mixed_with_case_insensitive_columns(tmp_path: Path) -> None:
    raw = write_raw(
        tmp_path,
        {
            "orders_a.csv": """
        ORDER_ID,Customer_Id,Ordered_At,AMOUNT,extra
        o1,c1,2024-01-05T00:00:00Z,10,x
        """
        },
    )
    pl.DataFrame(
        {
            "Order_ID": ["o2", "o1"],
            "customer_id": ["c2", "c1"],
            "ordered_at": ["2024-02-05T00:00:00Z", "2024-01-05T00:00:00Z"],
            "Amount": [3.5, 10.0],
        }
    ).write_parquet(raw / "orders_b.parquet")
    built = Built(raw)
    loaded = built.sql("select order_id, customer_id, amount, source_file from staging.int_orders order by order_id")
    assert loaded.rows() == [("o1", "c1", 10.0, "orders_a.csv"), ("o2", "c2", 3.5, "orders_b.parquet")]
    quarantined = built.sql("select source_file, source_row, reason from marts.quarantine").rows()
    assert quarantined == [("orders_b.parquet", 2, "duplicate order_id")]


def test_repeated_ids_keep_the_first_row_by_content(tmp_path: Path) -> None:
    # the duplicate rule runs only over rows whose id repeats; unique ids around them must pass untouched
    raw = write_raw(
        tmp_path,
        {
            "orders.csv": """
            order_id,customer_id,ordered_at,amount,currency,channel
            d1,c1,2024-01-05T00:00:00Z,10,,ads
            d1,c1,2024-01-04T00:00:00Z,10,,ads
            d2,c2,2024-01-04T00:00:00Z,ten,,ads
            d2,c2,2024-01-06T00:00:00Z,12,,ads
            d3,c3,2024-01-04T00:00:00Z,5,,ads
            d3,c3,2024-01-04T00:00:00Z,5,,ads
            u1,c4,2024-01-04T00:00:00Z,5,,ads
            """,
            "subscription_events.csv": """
            event_id,customer_id,occurred_at,event_type,plan,price,billing_period,currency,channel,segment
            x1,c1,2024-01-10T00:00:00Z,subscribed,pro,50,month,,,
            x1,c1,2024-01-10T00:00:00Z,subscribed,basic,20,month,,,
            x2,c1,2024-02-10T00:00:00Z,renewed,,,,,,
            x3,c1,2024-03-10T00:00:00Z,cancelled,,,,,,
            x3,c1,not a time,cancelled,,,,,,
            """,
        },
    )
    built = Built(raw)
    orders = built.sql("select order_id, amount, source_row from staging.int_orders order by order_id").rows()
    assert orders == [("d1", 10.0, 2), ("d2", 12.0, 4), ("d3", 5.0, 5), ("u1", 5.0, 7)]
    events = built.sql("select event_id, plan, source_row from staging.int_subscription_events order by event_id").rows()
    assert events == [("x1", "basic", 2), ("x2", None, 3), ("x3", None, 4)]
    quarantined = built.sql("select source, source_row, reason from marts.quarantine order by source, source_row").rows()
    assert quarantined == [
        ("orders", 1, "duplicate order_id"),
        ("orders", 3, "unparseable amount"),
        ("orders", 6, "duplicate order_id"),
        ("subscription_events", 1, "duplicate event_id"),
        ("subscription_events", 5, "unparseable occurred_at"),
    ]


def test_unreadable_csv_rows_are_quarantined_by_line(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "orders.csv").write_bytes(
        b"\xef\xbb\xbforder_id,customer_id,ordered_at,amount\n"
        b'o1,"c\n1",2024-01-05T00:00:00Z,10\n'
        b"o2,c2,2024-01-06T00:00:00Z,1,extra\n"
        b"o3,c3,2024-01-07T00:00:00Z,\xff\n"
        b"o4,c4,2024-01-08T00:00:00Z,4\n"
    )
    built = Built(raw)
    assert built.sql("select order_id, customer_id from staging.int_orders order by 1").rows() == [("o1", "c\n1"), ("o4", "c4")]
    rejects = built.sql("select source_row, reason from marts.quarantine order by source_row").rows()
    assert rejects == [(2, "unreadable CSV row: too many columns"), (3, "unreadable CSV row: invalid encoding")]
    rows = built.sql("select order_id, source_row from raw.orders order by source_row").rows()
    assert rows == [("o1", 1), ("o4", 4)]


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    raw = write_raw(tmp_path, {"orders.csv": "order_id,customer_id,amount\no1,c1,1\n"})
    with pytest.raises(RawInputError, match=r"^orders.csv: required column 'ordered_at' is missing"):
        preflight(raw)


def test_missing_raw_directory(tmp_path: Path) -> None:
    with pytest.raises(RawInputError, match="does not exist"):
        preflight(tmp_path / "nowhere")


def test_directory_without_inputs(tmp_path: Path) -> None:
    write_raw(tmp_path, {"notes.csv": "a\n1\n"})
    with pytest.raises(RawInputError, match="no orders\\* or subscription_events\\* files"):
        preflight(tmp_path)


def test_repeated_column_is_a_clear_error(tmp_path: Path) -> None:
    raw = write_raw(tmp_path, {"orders.csv": "order_id,customer_id,ordered_at,amount,Amount\n"})
    with pytest.raises(RawInputError, match="column 'amount' appears more than once"):
        preflight(raw)


def test_carried_plan_and_mrr_skip_events_that_contradict_the_lifecycle(tmp_path: Path) -> None:
    # p2 is quarantined (already subscribed): the renewal after it keeps p1's plan, MRR and spell.
    # Events before 1970 have negative instants; the lifecycle must read them the same way.
    raw = write_raw(
        tmp_path,
        {
            "subscription_events.csv": """
        event_id,customer_id,occurred_at,event_type,plan,price,billing_period,currency,channel,segment
        p1,c1,2024-01-05T00:00:00Z,subscribed,basic,20,month,,,
        p2,c1,2024-01-20T00:00:00Z,subscribed,pro,50,month,,,
        p3,c1,2024-02-05T00:00:00Z,renewed,,,,,,
        p4,c1,2024-02-20T00:00:00Z,cancelled,,,,,,
        p5,c1,2024-03-01T00:00:00Z,reactivated,pro,50,month,,,
        q1,c2,1969-12-01T00:00:00Z,trial_started,,,,,,
        q2,c2,1969-12-15T00:00:00Z,cancelled,,,,,,
        q3,c2,1969-12-20T00:00:00Z,cancelled,,,,,,
        q4,c2,1969-12-25T00:00:00Z,subscribed,basic,10,month,,,
        q5,c2,1970-01-10T00:00:00Z,expired,,,,,,
        """
        },
    )
    built = Built(raw, as_of="2024-04-01T00:00:00Z")
    states = built.sql("""
        select event_id, spell_number, plan_after, mrr_before, mrr_after, movement
        from staging.int_subscription_event_states order by customer_id, event_seq
    """).rows()
    assert states == [
        ("p1", 1, "basic", 0.0, 20.0, "new"),
        ("p3", 1, "basic", 20.0, 20.0, None),
        ("p4", 1, None, 20.0, 0.0, "voluntary_churn"),
        ("p5", 2, "pro", 0.0, 50.0, "reactivation"),
        ("q1", 0, None, 0.0, None, None),
        ("q2", 0, None, 0.0, None, None),
        ("q4", 1, "basic", 0.0, 10.0, "new"),
        ("q5", 1, None, 10.0, 0.0, "involuntary_churn"),
    ]
    trial_cancellations = built.sql(
        "select event_id from staging.int_subscription_event_states where is_trial_cancellation"
    ).rows()
    assert trial_cancellations == [("q2",)]
    quarantined = built.sql("select source_row, reason from marts.quarantine order by source_row").rows()
    assert quarantined == [
        (2, "subscribed while already subscribed"),
        (8, "cancelled before the customer's first subscribed"),
    ]


@pytest.mark.parametrize("unreadable_line", [None, 150_001])
def test_row_numbers_follow_the_file_across_many_row_groups(tmp_path: Path, unreadable_line: int | None) -> None:
    """A large file is parsed in parallel chunks; every row keeps its own data row number, with and
    without an unreadable row (which takes its number with it)."""
    count = 300_000
    lines = [f"o{i},c{i % 997},2024-01-01T00:00:00Z,{i}" for i in range(1, count + 1)]
    if unreadable_line is not None:
        lines[unreadable_line - 1] += ",extra"
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "orders.csv").write_text("order_id,customer_id,ordered_at,amount\n" + "\n".join(lines) + "\n", encoding="utf-8")
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    for source in SOURCES:
        ingest.load_source(conn, source, raw)
    for model in sql_models.topological_order(sql_models.load_models()):
        if model.name in ("stg_fx_rates", "stg_orders"):
            sql_models.run_model(conn, model, sql_parameters())
    expected_loaded = count - (unreadable_line is not None)
    manifest = conn.execute("select rows_read, unreadable_rows from raw.load_manifest where source = 'orders'").fetchall()
    assert manifest == [(count, count - expected_loaded)]
    # the staged rows and the view of the file, numbered by data row
    for table in ("staging.stg_orders", "raw.orders"):
        misnumbered = conn.execute(f"select count(*) from {table} where order_id <> 'o' || source_row").fetchall()[0][0]
        assert misnumbered == 0, table
        assert conn.execute(f"select count(*), max(source_row) from {table}").fetchall() == [(expected_loaded, count)]
    rejects = conn.execute("select source_row from raw.csv_rejects").fetchall()
    assert rejects == ([] if unreadable_line is None else [(unreadable_line,)])


@pytest.mark.parametrize("marker", ["NULL", "null", "\\N", " None ", "N/A", "#n/a"])
def test_null_markers_are_missing_values(tmp_path: Path, marker: str) -> None:
    raw = write_raw(
        tmp_path,
        {
            "orders.csv": f"""
            order_id,customer_id,ordered_at,amount,channel
            o1,c1,2024-01-05T00:00:00Z,10,{marker}
            o2,{marker},2024-01-06T00:00:00Z,10,ads
            {marker},c2,2024-01-06T00:00:00Z,10,ads
            o3,c3,{marker},10,ads
            """,
            "subscription_events.csv": f"""
            event_id,customer_id,occurred_at,event_type,plan,price,segment
            e1,c1,2024-01-05T00:00:00Z,subscribed,basic,20,{marker}
            e2,{marker},2024-01-05T00:00:00Z,subscribed,basic,20,smb
            {marker},c2,2024-01-05T00:00:00Z,subscribed,basic,20,smb
            e3,c3,2024-01-05T00:00:00Z,subscribed,{marker},20,smb
            """,
        },
    )
    built = Built(raw)
    assert _reasons(built, "orders") == {"missing customer_id": 1, "missing order_id": 1, "missing ordered_at": 1}
    assert _reasons(built, "subscription_events") == {
        "missing customer_id": 1,
        "missing event_id": 1,
        "missing plan for subscribed": 1,
    }
    assert built.sql("select customer_id, channel from staging.int_orders").rows() == [("c1", "unknown")]
    assert built.sql("select customer_id, segment from staging.int_subscription_events").rows() == [("c1", "unknown")]
