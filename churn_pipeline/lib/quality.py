"""Data quality: for every source, raw rows = loaded rows + quarantined rows; for every file in
the load manifest, rows read = rows staged + unreadable rows."""

from __future__ import annotations

import polars as pl

from churn_pipeline.lib.warehouse_tables import WarehouseTables

# loaded table per raw source; pre-subscription trial events count as loaded
LOADED_TABLES = {
    "orders": "staging.int_orders",
    "subscription_events": "staging.int_subscription_event_states",
    "fx_rates": "staging.int_fx_rates",
}


# every raw row of a source, quarantined or not, is one row of its staged table
STAGED_TABLES = {
    "orders": "staging.stg_orders",
    "subscription_events": "staging.stg_subscription_events",
    "fx_rates": "staging.stg_fx_rates",
}


# one row per source: raw_rows (readable + unreadable), loaded, quarantined. raw_rows is what the
# load manifest says its files held; for a source loaded through an adapter (whose manifest
# lines name the adapter's files), the rows the adapter built. (Fixed names from this module.)
RECONCILIATION_SQL = " union all ".join(
    f"""select '{source}' as source,
           coalesce(
               (select sum(rows_read) from raw.load_manifest where source = '{source}'),
               (select count(*) from raw.{source}) + (select count(*) from raw.csv_rejects where source = '{source}')
           ) as raw_rows,
           (select count(*) from {loaded}) as loaded,
           (select count(*) from marts.quarantine where source = '{source}') as quarantined"""
    for source, loaded in LOADED_TABLES.items()
)

_STAGED = " union all ".join(
    f"select '{source}' as source, source_file, count(*) as staged from {table} group by source_file"
    for source, table in STAGED_TABLES.items()
)

# one row per file of a directly loaded source, from the load manifest and from the staged table:
# rows_read, staged, unreadable. A file staged but missing from the manifest has rows_read null.
FILE_RECONCILIATION_SQL = f"""
    with staged as ({_STAGED}),

    unreadable as (
        select source, source_file, count(*) as unreadable from raw.csv_rejects group by source, source_file
    ),

    manifest as (
        select source, source_file, rows_read from raw.load_manifest
        where source in (select source from staged)
    ),

    files as (
        select source, source_file from manifest
        union
        select source, source_file from staged where source in (select source from manifest)
    )

    select
        files.source,
        files.source_file,
        manifest.rows_read,
        coalesce(staged.staged, 0) as staged,
        coalesce(unreadable.unreadable, 0) as unreadable
    from files
    left join manifest using (source, source_file)
    left join staged using (source, source_file)
    left join unreadable using (source, source_file)
    order by files.source, files.source_file
"""

QUARANTINE_REASONS_SQL = (
    "select source, reason, count(*) as rows from marts.quarantine group by source, reason order by source, rows desc, reason"
)


def reconciliation(tables: WarehouseTables) -> pl.DataFrame:
    """One row per source: raw_rows (readable + unreadable), loaded, quarantined."""
    return tables.frame(RECONCILIATION_SQL)


def file_reconciliation(tables: WarehouseTables) -> pl.DataFrame:
    """One row per file: rows_read (from the load manifest), staged, unreadable."""
    return tables.frame(FILE_RECONCILIATION_SQL)


def quarantine_reasons(tables: WarehouseTables) -> pl.DataFrame:
    return tables.frame(QUARANTINE_REASONS_SQL)
