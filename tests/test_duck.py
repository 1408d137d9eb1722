"""scan_table: warehouse tables handed to polars lazily, reading only what a plan uses."""

import duckdb
import polars as pl
import pytest

from churn_pipeline.lib.duck import scan_table


@pytest.fixture
def conn():
    conn = duckdb.connect()
    conn.execute(
        "create schema staging;"
        "create table staging.t as select range as id, range % 7 as bucket, 'row ' || range as label from range(10000)"
    )
    yield conn
    conn.close()


def test_filter_and_projection_give_the_rows_duckdb_gives(conn):
    got = scan_table(conn, "staging.t").filter(pl.col("bucket") == 3).select("id").sort("id").collect()
    expected = conn.sql("select id from staging.t where bucket = 3 order by id").pl()
    assert got.height == 1429
    assert got.equals(expected)


def test_only_the_columns_a_plan_uses_are_read(conn):
    plan = scan_table(conn, "staging.t").group_by("bucket").agg(pl.len()).explain()
    assert "PROJECT 1/3 COLUMNS" in plan


def test_one_table_scanned_twice_in_a_plan(conn):
    frame = scan_table(conn, "staging.t")
    low, high = frame.filter(pl.col("id") < 4000), frame.filter(pl.col("id") >= 4000).select("id", "bucket", "label")
    both = pl.concat([low, high]).join(frame.select("id", pl.col("bucket").alias("b2")), on="id").collect()
    assert both.height == 10000
    assert both["id"].sum() == sum(range(10000))
    assert (both["bucket"] == both["b2"]).all()


def test_a_limit_stops_early(conn):
    assert scan_table(conn, "staging.t").head(5).collect().height == 5


def test_an_unknown_table_is_an_error_naming_it(conn):
    with pytest.raises(duckdb.CatalogException, match="missing"):
        scan_table(conn, "staging.missing")
