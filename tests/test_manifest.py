"""The load manifest: one line per delivery file read, with its size, checksum and rows, and the
per-file and per-source accounting the blocking check reads from it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from churn_pipeline.lib import ingest, sql_models
from churn_pipeline.lib.quality import file_reconciliation, reconciliation
from churn_pipeline.lib.raw_sources import SOURCES
from churn_pipeline.lib.warehouse_tables import DuckDBTables
from helpers import Built, sql_parameters, write_raw

ORDERS = SOURCES[[source.name for source in SOURCES].index("orders")]

FLAT = {
    "orders.csv": """
        order_id,customer_id,ordered_at,amount,currency,channel
        o1,c1,2024-01-05T10:00:00Z,10,,ads
        o2,c2,2024-02-05T10:00:00Z,,,ads
        o3,c3
        o1,c1,2024-01-05T10:00:00Z,10,,ads
        """,
    "subscription_events.csv": """
        event_id,customer_id,occurred_at,event_type,plan,price,billing_period,currency,channel,segment
        e1,s1,2024-01-02T00:00:00Z,subscribed,basic,10,month,,ads,smb
        e2,s1,2024-03-02T00:00:00Z,cancelled,,,,,,
        """,
}


def _manifest(conn: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], tuple]:
    rows = conn.sql(
        "select source, source_file, delivery_month, size_bytes, sha256, rows_read, unreadable_rows from raw.load_manifest"
    ).fetchall()
    return {(row[0], row[1]): row[2:] for row in rows}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_file_read_has_a_line_and_every_row_is_accounted_for(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", FLAT)
    built = Built(raw, as_of="2024-04-01T00:00:00Z")
    manifest = _manifest(built.conn)
    # by hand: orders.csv has 4 data rows, one of them unreadable (two columns of six)
    assert manifest[("orders", "orders.csv")] == (None, (raw / "orders.csv").stat().st_size, _sha256(raw / "orders.csv"), 4, 1)
    assert manifest[("subscription_events", "subscription_events.csv")][3:] == (2, 0)
    assert set(manifest) == {("orders", "orders.csv"), ("subscription_events", "subscription_events.csv")}

    per_source = {row[0]: row[1:] for row in reconciliation(DuckDBTables(built.conn)).rows()}
    # orders: 4 read; o1 loaded once; its copy, o2 (no amount) and the unreadable row quarantined
    assert per_source["orders"] == (4, 1, 3)
    assert per_source["subscription_events"] == (2, 2, 0)
    assert file_reconciliation(DuckDBTables(built.conn)).rows() == [
        ("orders", "orders.csv", 4, 3, 1),
        ("subscription_events", "subscription_events.csv", 2, 2, 0),
    ]

    # a staged row that disappears shows on its file's line
    built.conn.execute("delete from staging.stg_orders where source_row = 2")
    assert ("orders", "orders.csv", 4, 2, 1) in file_reconciliation(DuckDBTables(built.conn)).rows()


def _monthly(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    write_raw(raw / "2024-01", {"orders.csv": "order_id,customer_id,ordered_at,amount\no1,c1,2024-01-05T10:00:00Z,10\n"})
    write_raw(
        raw / "2024-02",
        {"orders.csv": "order_id,customer_id,ordered_at,amount\no2,c1,2024-02-05T10:00:00Z,10\no3,c2,2024-02-06T10:00:00Z,5\n"},
    )
    return raw


def _stage(conn: duckdb.DuckDBPyConnection, raw: Path, months: tuple[str, ...] | None = None) -> None:
    """Register the files, then build the staging models, which read them (and count their rows)."""
    for source in SOURCES:
        ingest.load_source(conn, source, raw, months)
    for model in sql_models.topological_order(sql_models.load_models()):
        if model.name in ("stg_fx_rates", "stg_orders", "stg_subscription_events"):
            sql_models.run_model(conn, model, sql_parameters())


def test_a_rerun_month_replaces_exactly_its_manifest_lines(tmp_path: Path) -> None:
    raw = _monthly(tmp_path)
    conn = duckdb.connect()
    _stage(conn, raw)
    before = conn.sql("select * from raw.load_manifest where delivery_month = '2024-01'").fetchall()
    (raw / "2024-02" / "orders.csv").write_text("order_id,customer_id,ordered_at,amount\no2,c1,2024-02-05T10:00:00Z,12\n")
    ingest.load_source(conn, ORDERS, raw, months=("2024-02",))
    # registered again, not yet read: no rows counted
    assert _manifest(conn)[("orders", "2024-02/orders.csv")][2:4] == (_sha256(raw / "2024-02" / "orders.csv"), None)
    _stage(conn, raw, ("2024-02",))
    # January's file is registered again unchanged: its line keeps its counts, only its time of registration moves
    after = conn.sql("select * from raw.load_manifest where delivery_month = '2024-01'").fetchall()
    assert [line[:8] for line in after] == [line[:8] for line in before]
    assert _manifest(conn)[("orders", "2024-02/orders.csv")][2:5] == (_sha256(raw / "2024-02" / "orders.csv"), 1, 0)
    assert len(_manifest(conn)) == 2


def test_raw_tables_of_an_earlier_version_become_views_of_the_files(tmp_path: Path) -> None:
    raw = _monthly(tmp_path)
    conn = duckdb.connect()
    _stage(conn, raw)
    # as the previous version left the warehouse: raw.orders a text table, manifest lines without a path
    conn.execute("drop view raw.orders")
    conn.execute(
        "create table raw.orders as select '2024-01/orders.csv' as source_file, 1::bigint as source_row, 'o1' as order_id"
    )
    conn.execute("alter table raw.load_manifest drop column file_columns")
    conn.execute("alter table raw.load_manifest drop column path")
    loaded = ingest.load_source(conn, ORDERS, raw, months=("2024-02",))
    # every file registered again, not only February's, and raw.orders a view of them
    assert loaded.upgraded
    assert sorted(load.file for load in loaded.files) == ["2024-01/orders.csv", "2024-02/orders.csv"]
    kind = conn.sql("select table_type from information_schema.tables where table_name = 'orders'").fetchall()
    assert kind == [("VIEW",)]
    assert conn.sql("select order_id, source_file, source_row from raw.orders order by all").fetchall() == [
        ("o1", "2024-01/orders.csv", 1),
        ("o2", "2024-02/orders.csv", 1),
        ("o3", "2024-02/orders.csv", 2),
    ]
    # a load of a warehouse this version wrote is no upgrade
    assert not ingest.load_source(conn, ORDERS, raw, months=("2024-02",)).upgraded
