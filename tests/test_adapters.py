"""Source adapters on small slices written here, and end to end on the two public data sets."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from churn_pipeline.lib.adapters import AdapterError, load_adapter
from helpers import Built, write_raw

# The public data sets (../shared/external beside a developer's clone); a user's clone has none,
# so the end-to-end runs on them skip, and the small slices below still test both adapters.
EXTERNAL = Path(os.environ.get("CHURN_PUBLIC_DATA", Path(__file__).parents[2] / "shared" / "external"))

RETAIL = """
InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,LANTERN,2,2010-12-01 08:26:00,3.00,17850.0,United Kingdom
536366,22633,FREE GIFT,1,2010-12-01 09:00:00,0.00,17850.0,United Kingdom
536366,22632,WARMER,4,2010-12-01 09:00:00,1.85,17850.0,United Kingdom
C536379,D,Discount,-1,2010-12-02 09:41:00,27.50,17850.0,United Kingdom
536380,22961,JAR,10,2010-12-03 10:00:00,1.00,,United Kingdom
536381,22112,BOTTLE,3,2011-03-31 23:59:00,5.00,13047.0,United Kingdom
536381,22113,BOTTLE,1,2011-04-01 00:01:00,5.00,13047.0,United Kingdom
536382,22114,BOTTLE,2,2011-07-15 12:00:00,5.00,13047.0,United Kingdom
"""
FOODIE_PLANS = (
    "plan_id,plan_name,price\n0,trial,0.00\n1,basic monthly,9.90\n2,pro monthly,19.90\n3,pro annual,199.00\n4,churn,null\n"
)
FOODIE_SUBS = """
customer_id,plan_id,start_date
1,0,2020-01-01
1,1,2020-01-08
1,3,2020-03-15
1,4,2020-06-20
2,0,2020-02-01
2,4,2020-02-05
"""


def _gzip(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with gzip.open(directory / name, "wt", encoding="utf-8") as handle:
        handle.write(text.lstrip())


def test_online_retail_invoices_become_orders(tmp_path: Path) -> None:
    _gzip(tmp_path, "online_retail.csv.gz", RETAIL)
    built = Built(tmp_path, source="online_retail", source_timezone="Europe/London", reporting_currency="GBP")
    orders = {
        row[0]: row[1:]
        for row in built.sql("select order_id, customer_id, amount, ordered_at from staging.int_orders order by order_id").rows()
    }
    assert orders["536365"][:2] == ("17850", pytest.approx(6 * 2.55 + 2 * 3.00))
    assert orders["536366"][1] == pytest.approx(4 * 1.85)  # the zero-price line adds nothing
    assert orders["C536379"][1] == pytest.approx(-27.50)  # a cancellation is a refund
    # UK local time: 1 December is GMT; the invoice spanning midnight takes its first line's time (BST starts 27 March)
    assert orders["536365"][2] == datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
    assert orders["536381"][2] == datetime(2011, 3, 31, 22, 59, tzinfo=UTC)
    assert orders["536381"][1] == pytest.approx(20.0)
    quarantine = built.sql("select reason, raw_values from marts.quarantine").rows()
    assert [r[0] for r in quarantine] == ["missing customer_id"]
    assert '"order_id":"536380"' in quarantine[0][1]
    assert built.sql("select count(*) from raw.orders").item() == 6  # six invoices from nine lines


def test_online_retail_option_keeps_non_positive_prices(tmp_path: Path) -> None:
    _gzip(tmp_path, "online_retail.csv.gz", RETAIL.replace("1,2010-12-01 09:00:00,0.00", "1,2010-12-01 09:00:00,-5.00"))
    kept = Built(tmp_path, source="online_retail", source_options={"drop_non_positive_prices": "false"})
    dropped = Built(tmp_path, source="online_retail")
    query = "select amount from staging.int_orders where order_id = '536366'"
    assert kept.sql(query).item() == pytest.approx(4 * 1.85 - 5.00)
    assert dropped.sql(query).item() == pytest.approx(4 * 1.85)


def test_foodie_fi_plan_history_becomes_events(tmp_path: Path) -> None:
    raw = write_raw(tmp_path, {"subscriptions.csv": FOODIE_SUBS, "plans.csv": FOODIE_PLANS})
    built = Built(raw, source="foodie_fi", as_of="2020-08-01T00:00:00Z")
    events = built.sql(
        "select customer_id, event_type, plan, billing_period, mrr from staging.int_subscription_events order by customer_id, event_seq"
    ).rows()
    assert events == [
        ("1", "trial_started", None, "month", None),
        ("1", "subscribed", "basic monthly", "month", pytest.approx(9.90)),
        ("1", "plan_changed", "pro annual", "year", pytest.approx(199.0 / 12)),
        ("1", "cancelled", None, "month", None),
        ("2", "trial_started", None, "month", None),
        ("2", "cancelled", None, "month", None),  # a cancelled trial: not churn
    ]
    customers = built.sql("select customer_id, cohort_month, first_churn_lifetime_month from staging.int_customers").rows()
    assert customers == [("1", date(2020, 1, 1), 5)]
    movements = built.sql(
        "select movement from staging.int_subscription_events where customer_id = '1' and event_type = 'plan_changed'"
    ).item()
    assert movements == "expansion"  # 9.90 -> 16.58 a month


def test_unknown_adapter_and_option_are_clear_errors() -> None:
    with pytest.raises(AdapterError, match="no adapter 'nope' \\(available: foodie_fi, online_retail\\)"):
        load_adapter("nope")
    with pytest.raises(AdapterError, match="not an option of source 'online_retail'"):
        load_adapter("online_retail").options({"colour": "red"})
    with pytest.raises(AdapterError, match="is not a bool"):
        load_adapter("online_retail").options({"drop_non_positive_prices": "maybe"})


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "churn_pipeline.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("source, raw_rows, basis", [("foodie_fi", 2650, "subscription"), ("online_retail", 25900, "orders")])
def test_full_public_data_sets(tmp_path: Path, source: str, raw_rows: int, basis: str) -> None:
    raw_dir = EXTERNAL / source
    if not raw_dir.exists():
        pytest.skip(f"public data set {raw_dir} is not here (set CHURN_PUBLIC_DATA to the folder that holds {source}/)")
    result = _run_cli(
        "run",
        "--source",
        source,
        "--raw-dir",
        str(raw_dir),
        "--warehouse",
        str(tmp_path / "w.duckdb"),
        "--output-dir",
        str(tmp_path / "marts"),
    )
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        table = "orders" if basis == "orders" else "subscription_events"
        raw = conn.sql(f"select count(*) from raw.{table}").fetchall()[0][0]
        loaded = conn.sql(f"select count(*) from staging.int_{table}").fetchall()[0][0]
        quarantined = conn.sql("select count(*) from marts.quarantine where source = $s", params={"s": table}).fetchall()[0][0]
        assert raw == raw_rows == loaded + quarantined
        expected_customers = conn.sql(
            "select count(distinct customer_id) from staging.int_orders where amount > 0"
            if basis == "orders"
            else "select count(distinct customer_id) from staging.int_subscription_events where event_type = 'subscribed'"
        ).fetchall()[0][0]
        last_complete = conn.sql("select last_complete_month from staging.int_observation_window").fetchall()[0][0]
        in_cohorts = conn.sql(
            "select count(*) from staging.int_customers where basis = $b and cohort_month <= $m",
            params={"b": basis, "m": last_complete},
        ).fetchall()[0][0]
        sizes = (
            pl.read_parquet(tmp_path / "marts" / "cohort_retention.parquet")
            .filter((pl.col("basis") == basis) & (pl.col("months_since_signup") == 0))["cohort_size"]
            .sum()
        )
        assert sizes == in_cohorts <= expected_customers
        all_customers = conn.sql("select count(*) from staging.int_customers where basis = $b", params={"b": basis}).fetchall()[
            0
        ][0]
        assert all_customers == expected_customers


# Foodie-Fi's adapter with its cancellations emitted twice: two output rows for one source row
REPEATED_ROW_KEY = (
    r"foodie_fi/subscription_events\.sql: 2 output rows share source_file "
    r"'subscriptions\.csv', source_row 4; each output row must point back"
)


def doubling_adapter(tmp_path: Path):
    """Foodie-Fi's adapter whose events select repeats the cancellations, its slice's files, and
    the contract source it builds."""
    from dataclasses import replace

    from churn_pipeline.lib.raw_sources import SOURCES

    root = tmp_path / "doubling"
    root.mkdir()
    shipped = load_adapter("foodie_fi")
    (root / "subscription_events.sql").write_text(
        shipped.sql_for("subscription_events") + "\nunion all\nselect * from final where event_type = 'cancelled'\n",
        encoding="utf-8",
    )
    raw = write_raw(tmp_path, {"subscriptions.csv": FOODIE_SUBS, "plans.csv": FOODIE_PLANS})
    events = next(source for source in SOURCES if source.name == "subscription_events")
    return replace(shipped, root=root), raw, events


def test_adapter_rows_must_point_at_their_own_source_row(tmp_path: Path) -> None:
    """The quarantine finds a row's raw text by (source_file, source_row), so an adapter that
    emits two rows for one source row is stopped with one line naming the file."""
    from churn_pipeline.lib.adapters import load_through_adapter

    adapter, raw, events = doubling_adapter(tmp_path)
    conn = duckdb.connect()
    conn.execute("create schema raw")
    with pytest.raises(AdapterError, match=REPEATED_ROW_KEY):
        load_through_adapter(conn, adapter, events, raw, adapter.options({}))
