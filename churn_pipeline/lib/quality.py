"""Data quality: for every source, raw rows = loaded rows + quarantined rows."""

from __future__ import annotations

import duckdb
import polars as pl

# loaded table per raw source; pre-subscription trial events count as loaded
LOADED_TABLES = {
    "orders": "staging.int_orders",
    "subscription_events": "staging.int_subscription_event_states",
    "fx_rates": "staging.int_fx_rates",
}


def reconciliation(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """One row per source: raw_rows (readable + unreadable), loaded, quarantined."""
    selects = " union all ".join(
        f"""select '{source}' as source,
               (select count(*) from raw.{source}) + (select count(*) from raw.csv_rejects where source = '{source}') as raw_rows,
               (select count(*) from {loaded}) as loaded,
               (select count(*) from marts.quarantine where source = '{source}') as quarantined"""
        for source, loaded in LOADED_TABLES.items()  # fixed names from this module, never user text
    )
    return conn.sql(selects).pl()


def quarantine_reasons(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return conn.sql(
        "select source, reason, count(*) as rows from marts.quarantine group by all order by source, rows desc, reason"
    ).pl()
