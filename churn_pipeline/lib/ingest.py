"""Load raw files into the warehouse's `raw` schema, as text, with their origin.

Every file is read exactly once by DuckDB. Rows the CSV parser cannot read
(wrong column count, unterminated quotes, invalid UTF-8) are kept in
`raw.csv_rejects`; typed validation happens later in the SQL models, so that
every raw row ends up either loaded or quarantined.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb

from churn_pipeline.lib.duck import has_column, scalar, transaction
from churn_pipeline.lib.incremental import (
    TOP_LEVEL,
    ensure_bookkeeping,
    forget_delivery_versions,
    month_version,
    record_delivery_versions,
)
from churn_pipeline.lib.raw_sources import (
    MONTH_FOLDER,
    SOURCES,
    RawInputError,
    RawSource,
    delivery_month,
    file_format,
    relative_name,
)

RAW_REJECTS_COLUMNS = (
    "source varchar, source_file varchar, source_row bigint, error_type varchar, raw_line varchar, delivery_month varchar"
)
LOAD_MANIFEST = "raw.load_manifest"
LOAD_MANIFEST_COLUMNS = (
    "source varchar, source_file varchar, delivery_month varchar, size_bytes bigint, modified_at timestamptz, "
    "sha256 varchar, rows_read bigint, unreadable_rows bigint, loaded_at timestamptz"
)


class RawFileChanged(OSError):
    """A raw file changed while it was read (still being written): worth retrying shortly."""


@dataclass(frozen=True)
class FileLoad:
    source: str
    file: str
    rows_loaded: int
    rows_rejected: int
    delivery_month: str | None = None
    size: int = 0
    mtime_ns: int = 0
    ignored_columns: tuple[str, ...] = ()
    """Columns of the file that are not in the contract (read past, as the contract says)."""

    @property
    def rows_read(self) -> int:
        """The file's data rows: the ones the parser read and the unreadable ones."""
        return self.rows_loaded + self.rows_rejected


def delivery_versions(loads: list[FileLoad]) -> dict[str, str]:
    """Each delivery month's version, from the files loaded for it (top-level files: month '')."""
    files: dict[str, list[tuple[str, int, int, int, int]]] = {}
    for load in loads:
        month = load.delivery_month or TOP_LEVEL
        files.setdefault(month, []).append((load.file, load.size, load.mtime_ns, load.rows_loaded, load.rows_rejected))
    return {month: month_version(month_files) for month, month_files in files.items()}


def check_raw_dir(raw_dir: Path, months: tuple[str, ...] | None = None, source: RawSource | None = None) -> None:
    """The raw directory exists and has deliveries: any, or one for each of `months` (the
    message names the month, its folder, and the source being loaded when there is one)."""
    if not raw_dir.exists():
        raise RawInputError(f"raw directory {raw_dir} does not exist")
    if not raw_dir.is_dir():
        raise RawInputError(f"raw directory {raw_dir} is not a directory")
    events = [source for source in SOURCES if source.name != "fx_rates"]
    if months is None:
        if not any(source.files(raw_dir) for source in events):
            raise RawInputError(
                f"raw directory {raw_dir} has no orders* or subscription_events* files (.csv, .csv.gz or .parquet)"
            )
        return
    for month in months:
        if not any(delivery_month(path, raw_dir) == month for source in events for path in source.files(raw_dir, (month,))):
            loading = f", so there is no {month} delivery to load {source.name}* from" if source else ""
            raise RawInputError(
                f"month {month}: {raw_dir / month} has no orders* or subscription_events* files (.csv, .csv.gz or .parquet){loading}"
            )


def _label(path: Path) -> str:
    """A file as messages name it: `orders.csv`, or `2024-05/orders.csv` in a month folder."""
    return f"{path.parent.name}/{path.name}" if MONTH_FOLDER.match(path.parent.name) else path.name


def _map_columns(source: RawSource, path: Path, header: list[str]) -> dict[str, str]:
    """Contract column -> column name as written in the file (matched case-insensitively)."""
    mapping: dict[str, str] = {}
    for written in header:
        key = written.strip().lower()
        if key in source.columns:
            if key in mapping:
                raise RawInputError(
                    f"{_label(path)}: column {key!r} appears more than once (columns are matched case-insensitively)"
                )
            mapping[key] = written
    for column in source.required:
        if column not in mapping:
            raise RawInputError(
                f"{_label(path)}: required column {column!r} is missing (found: {', '.join(header) or 'no columns'})"
            )
    return mapping


def _extra_columns(source: RawSource, header: list[str]) -> tuple[str, ...]:
    return tuple(written for written in header if written.strip().lower() not in source.columns)


def _csv_header(path: Path) -> list[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as raw:
            first = raw.readline(1 << 20)
    except OSError as exc:
        raise RawInputError(f"{_label(path)}: cannot read the file ({exc.strerror or exc})") from None
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RawInputError(f"{_label(path)}: the header row is not UTF-8") from None
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0] if rows else []


def _create_raw_table(conn: duckdb.DuckDBPyConnection, source: RawSource) -> None:
    columns = ", ".join(f"{column} varchar" for column in source.columns)
    conn.execute(
        f"create or replace table raw.{source.name} ({columns}, source_file varchar, source_row bigint, delivery_month varchar)"
    )
    # whoever fills it records its delivery versions and manifest lines again (an adapter records
    # none for the contract table)
    forget_delivery_versions(conn, source.name)
    _forget_manifest(conn, source.name, None)


def _create_rejects_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("create schema if not exists raw")
    conn.execute(f"create table if not exists raw.csv_rejects ({RAW_REJECTS_COLUMNS})")
    _ensure_manifest(conn)
    # warehouses built before monthly deliveries lack the column
    conn.execute("alter table raw.csv_rejects add column if not exists delivery_month varchar")
    ensure_bookkeeping(conn)


def _ensure_manifest(conn: duckdb.DuckDBPyConnection) -> None:
    """The load manifest. A warehouse loaded before it existed gets a line per file already in its
    raw tables, with the rows it holds and no size, time or checksum (the file may have changed
    since)."""
    exists = has_column(conn, "raw", "load_manifest")
    conn.execute(f"create table if not exists {LOAD_MANIFEST} ({LOAD_MANIFEST_COLUMNS})")
    if exists:
        return
    for source in SOURCES:
        if has_column(conn, "raw", source.name):
            month = "delivery_month" if has_column(conn, "raw", source.name, "delivery_month") else "null::varchar"
            conn.execute(
                f"""
                insert into {LOAD_MANIFEST}
                with parsed as (
                    select source_file, any_value({month}) as delivery_month, count(*) as parsed
                    from raw.{source.name} group by source_file
                ),
                rejects as (
                    select source_file, count(*) as unreadable from raw.csv_rejects
                    where source = $source group by source_file
                )
                select $source, source_file, parsed.delivery_month, null, null, null,
                    coalesce(parsed, 0) + coalesce(unreadable, 0), coalesce(unreadable, 0), null
                from parsed full join rejects using (source_file)
                """,
                {"source": source.name},
            )


def _fingerprint(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _load_csv(conn: duckdb.DuckDBPyConnection, source: RawSource, path: Path, name: str, month: str | None) -> FileLoad:
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
    return FileLoad(source.name, name, loaded, rejected, ignored_columns=_extra_columns(source, header))


def _load_parquet(conn: duckdb.DuckDBPyConnection, source: RawSource, path: Path, name: str, month: str | None) -> FileLoad:
    try:
        described = conn.execute("describe select * from read_parquet($path)", {"path": str(path)}).fetchall()
    except duckdb.Error as exc:
        raise RawInputError(f"{_label(path)}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    header = [row[0] for row in described]
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
    return FileLoad(source.name, name, loaded, 0, ignored_columns=_extra_columns(source, header))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_file(conn: duckdb.DuckDBPyConnection, source: RawSource, path: Path, raw_dir: Path) -> FileLoad:
    """Append one file's rows to raw.<source> (parser rejects to raw.csv_rejects) and its line
    to the load manifest."""
    before = _fingerprint(path)
    checksum = _sha256(path)
    loader = _load_csv if file_format(path) == "csv" else _load_parquet
    month = delivery_month(path, raw_dir)
    load = loader(conn, source, path, relative_name(path, raw_dir), month)
    if _fingerprint(path) != before:
        raise RawFileChanged(f"{relative_name(path, raw_dir)} changed while it was read (still being written?)")
    load = replace(load, delivery_month=month, size=before[0], mtime_ns=before[1])
    conn.execute(
        f"""
        insert into {LOAD_MANIFEST}
        values ($source, $file, $month, $size, make_timestamptz($mtime_us), $sha256, $read, $unreadable, now())
        """,
        {
            "source": load.source,
            "file": load.file,
            "month": month,
            "size": load.size,
            "mtime_us": load.mtime_ns // 1000,
            "sha256": checksum,
            "read": load.rows_read,
            "unreadable": load.rows_rejected,
        },
    )
    return load


def _forget_manifest(conn: duckdb.DuckDBPyConnection, source: str, months: tuple[str, ...] | None) -> None:
    """The manifest lines of the files a load replaces: all of the source's, or those of its
    top-level files and of `months`."""
    conn.execute(
        f"delete from {LOAD_MANIFEST} where source = $source and ($all or delivery_month is null or list_contains($months::varchar[], delivery_month))",
        {"source": source, "all": months is None, "months": list(months or ())},
    )


def load_source(
    conn: duckdb.DuckDBPyConnection, source: RawSource, raw_dir: Path, months: tuple[str, ...] | None = None
) -> list[FileLoad]:
    """Load the source's files into `raw.<source>`; parser rejects go to raw.csv_rejects.

    `months=None` replaces the whole table with every file. Otherwise only those months'
    delivery folders are read, and exactly their rows are replaced (a rerun never duplicates).
    """
    check_raw_dir(raw_dir, months, source)
    _create_rejects_table(conn)
    with transaction(conn):
        if months is None:
            _create_raw_table(conn, source)
            conn.execute("delete from raw.csv_rejects where source = $source", {"source": source.name})
        else:
            if not has_column(conn, "raw", source.name):
                _create_raw_table(conn, source)
            conn.execute(f"alter table raw.{source.name} add column if not exists delivery_month varchar")
            # top-level files (delivery_month null) are reloaded with every month
            conn.execute(
                f"delete from raw.{source.name} where delivery_month is null or list_contains($months, delivery_month)",
                {"months": list(months)},
            )
            conn.execute(
                "delete from raw.csv_rejects where source = $source and (delivery_month is null or list_contains($months, delivery_month))",
                {"source": source.name, "months": list(months)},
            )
            _forget_manifest(conn, source.name, months)
        loads = [load_file(conn, source, path, raw_dir) for path in source.files(raw_dir, months)]
        record_delivery_versions(conn, source.name, delivery_versions(loads), months)
    return loads


def preflight(raw_dir: Path, months: tuple[str, ...] | None = None) -> list[Path]:
    """Check the raw directory and every file's header before anything is written."""
    check_raw_dir(raw_dir, months)
    conn = duckdb.connect()
    files = []
    try:
        for source in SOURCES:
            for path in source.files(raw_dir, months):
                if file_format(path) == "csv":
                    _map_columns(source, path, _csv_header(path))
                else:
                    try:
                        described = conn.execute("describe select * from read_parquet($path)", {"path": str(path)}).fetchall()
                    except duckdb.Error as exc:
                        raise RawInputError(f"{_label(path)}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
                    _map_columns(source, path, [row[0] for row in described])
                files.append(path)
    finally:
        conn.close()
    return files
