"""A source adapter's input files loaded as text tables (`raw.src_<table>`), which its SQL maps
onto the contract's raw tables. The contract's own files are read in place (ingest.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from churn_pipeline.lib.duck import scalar
from churn_pipeline.lib.ingest import (
    FileLoad,
    RawFileChanged,
    _csv_header,
    _extra_columns,
    _fingerprint,
    _map_columns,
    _sha256,
    file_header,
    write_manifest_line,
)
from churn_pipeline.lib.raw_sources import RawSource, delivery_month, file_format, relative_name


def _load_csv(
    conn: duckdb.DuckDBPyConnection, source: RawSource, path: Path, name: str, month: str | None
) -> tuple[int, int, tuple[str, ...]]:
    header = _csv_header(path)
    mapping = _map_columns(source, path, header)
    # Positional names keep file-supplied text out of SQL identifiers.
    positional = {f"c{i}": "VARCHAR" for i in range(len(header))}
    by_key = {written.strip().lower(): f"c{i}" for i, written in enumerate(header)}
    conn.execute("drop table if exists csv_file_rejects")
    conn.execute("drop table if exists csv_file_scans")
    conn.execute(
        """
        create or replace temp table csv_file as
        select * from read_csv(
            $path, columns = $columns, header = true, auto_detect = false,
            delim = ',', quote = '"', escape = '"', strict_mode = true,
            store_rejects = true, rejects_table = 'csv_file_rejects', rejects_scan = 'csv_file_scans'
        )
        """,
        {"path": str(path), "columns": positional},
    )
    select = ", ".join(
        f"{by_key[column]} as {column}" if column in mapping else f"null::varchar as {column}" for column in source.columns
    )
    loaded = scalar(conn, "select count(*) from csv_file")
    rejected = scalar(conn, "select count(distinct line) from csv_file_rejects")
    # The temp table holds the parsed rows in file order (DuckDB preserves insertion order), so a
    # row's place in it is its data row number. `order by rowid`: without it DuckDB's order-keeping
    # insert into a table created in this transaction is written again at the next checkpoint.
    if rejected == 0:
        conn.execute(
            f"""
            insert into raw.{source.name}
            select {select}, $file, rowid - (select min(rowid) from csv_file) + 1, $month
            from csv_file
            order by rowid
            """,
            {"file": name, "month": month},
        )
    else:
        # The reader numbers records (header = 1); parsed rows fill the record numbers rejects leave free.
        conn.execute(
            f"""
            insert into raw.{source.name}
            with parsed as (
                select *, rowid - (select min(rowid) from csv_file) + 1 as parsed_index from csv_file
            ),
            records as (
                select range as record, row_number() over (order by range) as parsed_index
                from range(1, $total + 1)
                where range not in (select line - 1 from csv_file_rejects)
            )
            select {select}, $file, records.record, $month
            from parsed
            inner join records using (parsed_index)
            order by records.record
            """,
            {"file": name, "total": loaded + rejected, "month": month},
        )
    conn.execute(
        """
        insert into raw.csv_rejects
        select $source, $file, line - 1, string_agg(distinct error_type, '; ' order by error_type),
               first(csv_line order by column_idx), $month
        from csv_file_rejects
        group by line
        order by line
        """,
        {"source": source.name, "file": name, "month": month},
    )
    conn.execute("drop table csv_file")
    return loaded, rejected, _extra_columns(source, header)


def _load_parquet(
    conn: duckdb.DuckDBPyConnection, source: RawSource, path: Path, name: str, month: str | None
) -> tuple[int, int, tuple[str, ...]]:
    header = file_header(conn, path)
    mapping = _map_columns(source, path, header)
    # Positional names keep file-supplied text out of SQL identifiers, as for CSV.
    positional = [f"c{i}" for i in range(len(header))]
    by_key = {written.strip().lower(): positional[i] for i, written in enumerate(header)}
    select = ", ".join(
        f"cast({by_key[column]} as varchar) as {column}" if column in mapping else f"null::varchar as {column}"
        for column in source.columns
    )
    conn.execute(
        f"""
        insert into raw.{source.name}
        select {select}, $file, file_row_number + 1, $month
        from read_parquet($path, file_row_number = true) as parquet_file({", ".join(positional)})
        order by file_row_number
        """,
        {"path": str(path), "file": name, "month": month},
    )
    loaded = scalar(conn, f"select count(*) from raw.{source.name} where source_file = $file", {"file": name})
    return loaded, 0, _extra_columns(source, header)


def load_text_file(conn: duckdb.DuckDBPyConnection, source: RawSource, path: Path, raw_dir: Path) -> FileLoad:
    """Append one file's rows to raw.<source> as text (parser rejects to raw.csv_rejects) and its
    line, with its row counts, to the load manifest."""
    before = _fingerprint(path)
    checksum = _sha256(path)
    loader = _load_csv if file_format(path) == "csv" else _load_parquet
    month = delivery_month(path, raw_dir)
    loaded, rejected, ignored = loader(conn, source, path, relative_name(path, raw_dir), month)
    if _fingerprint(path) != before:
        raise RawFileChanged(f"{relative_name(path, raw_dir)} changed while it was read (still being written?)")
    load = FileLoad(source.name, relative_name(path, raw_dir), month, *before, checksum, ignored, loaded, rejected)
    write_manifest_line(conn, load, path, loaded + rejected, rejected)
    return load
