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
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from churn_pipeline.lib.duck import has_column, rows, scalar, transaction
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
    "sha256 varchar, rows_read bigint, unreadable_rows bigint, loaded_at timestamptz, path varchar, file_columns varchar[]"
)


class RawFileChanged(OSError):
    """A raw file changed while it was read (still being written): worth retrying shortly."""


@dataclass(frozen=True)
class FileLoad:
    source: str
    file: str
    delivery_month: str | None
    size: int
    mtime_ns: int
    sha256: str
    ignored_columns: tuple[str, ...] = ()
    """Columns of the file that are not in the contract (read past, as the contract says)."""
    rows_loaded: int | None = None
    rows_rejected: int | None = None
    """Rows parsed and unreadable, for a file loaded as text (an adapter's); a contract file's
    rows are counted when a staging model reads it."""


def delivery_versions(loads: list[FileLoad]) -> dict[str, str]:
    """Each delivery month's version, from the files registered for it (top-level files: month '')."""
    files: dict[str, list[tuple[str, int, str]]] = {}
    for load in loads:
        files.setdefault(load.delivery_month or TOP_LEVEL, []).append((load.file, load.size, load.sha256))
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
    """A raw table of text rows, for what a source adapter maps onto the contract (the contract's
    own sources are views of their files, see `_create_raw_view`)."""
    _drop_raw_relation(conn, source.name)
    columns = ", ".join(f"{column} varchar" for column in source.columns)
    conn.execute(f"create table raw.{source.name} ({columns}, source_file varchar, source_row bigint, delivery_month varchar)")
    # whoever fills it records its delivery versions and manifest lines again (an adapter records
    # none for the contract table)
    forget_delivery_versions(conn, source.name)
    _forget_manifest(conn, source.name, None)


def _raw_kind(conn: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """What raw.<name> is: 'VIEW', 'BASE TABLE', or None when there is none."""
    return scalar(
        conn,
        "select table_type from information_schema.tables where table_schema = 'raw' and table_name = $name",
        {"name": name},
    )


def is_file_view(conn: duckdb.DuckDBPyConnection, source: str) -> bool:
    """Whether raw.<source> is a view of delivery files (not an adapter's text table)."""
    return _raw_kind(conn, source) == "VIEW"


def _drop_raw_relation(conn: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """Drop raw.<name>, a table or a view; returns which it was."""
    kind = _raw_kind(conn, name)
    if kind == "VIEW":
        conn.execute(f"drop view raw.{name}")
    elif kind is not None:
        conn.execute(f"drop table raw.{name}")
    return kind


def _create_rejects_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("create schema if not exists raw")
    conn.execute(f"create table if not exists raw.csv_rejects ({RAW_REJECTS_COLUMNS})")
    _ensure_manifest(conn)
    # warehouses built before monthly deliveries lack the column
    conn.execute("alter table raw.csv_rejects add column if not exists delivery_month varchar")
    ensure_bookkeeping(conn)


def _ensure_manifest(conn: duckdb.DuckDBPyConnection) -> None:
    """The load manifest, with the columns a warehouse from an earlier version lacks. Its lines for
    files loaded by that version get no path or columns: the next load of their source reads their
    files again (`load_source`)."""
    conn.execute(f"create table if not exists {LOAD_MANIFEST} ({LOAD_MANIFEST_COLUMNS})")
    conn.execute(f"alter table {LOAD_MANIFEST} add column if not exists path varchar")
    conn.execute(f"alter table {LOAD_MANIFEST} add column if not exists file_columns varchar[]")


def _fingerprint(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def file_header(conn: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """A delivery file's column names as written: a CSV's header row, a Parquet file's schema."""
    if file_format(path) == "csv":
        return _csv_header(path)
    try:
        return [row[0] for row in conn.execute("describe select * from read_parquet($path)", {"path": str(path)}).fetchall()]
    except duckdb.Error as exc:
        raise RawInputError(f"{_label(path)}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None


def _sql_text(value: str) -> str:
    """A string literal for a view's SQL (a view keeps no bound parameters)."""
    return "'" + value.replace("'", "''") + "'"


def _file_reader(source: RawSource, line: ManifestLine) -> str:
    """One file's rows as the contract's text columns, with source_file, source_row (the file's
    data row number) and delivery_month."""
    origin = f"{_sql_text(line.file)} as source_file, {{row}} as source_row, " + (
        f"{_sql_text(line.month)} as delivery_month" if line.month else "null::varchar as delivery_month"
    )
    path = Path(line.path)
    if not path.is_file():
        # a month's file deleted after it was loaded: reading that month again says so
        message = f"{line.file}: the delivery file is gone since it was loaded; restore it, or rebuild with --full-refresh --rebuild-from-files"
        missing = ", ".join(f"null::varchar as {c}" for c in source.columns[1:])
        return (
            f"select error({_sql_text(message)})::varchar as {source.columns[0]}, {missing}, {origin.format(row='null::bigint')}"
        )
    mapping = _map_columns(source, path, list(line.file_columns))
    by_key = {written.strip().lower(): f"c{i}" for i, written in enumerate(line.file_columns)}
    if file_format(path) == "parquet":
        select = ", ".join(
            f"cast({by_key[c]} as varchar) as {c}" if c in mapping else f"null::varchar as {c}" for c in source.columns
        )
        positional = ", ".join(f"c{i}" for i in range(len(line.file_columns)))
        return (
            f"select {select}, {origin.format(row='file_row_number + 1')} "
            f"from read_parquet({_sql_text(line.path)}, file_row_number = true) as parquet_file({positional})"
        )
    select = ", ".join(f"{by_key[c]} as {c}" if c in mapping else f"null::varchar as {c}" for c in source.columns)
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(line.file_columns))) + "}"
    reader = (
        f"read_csv({_sql_text(line.path)}, columns = {columns}, header = true, auto_detect = false, "
        "delim = ',', quote = '\"', escape = '\"', strict_mode = true, store_rejects = true, "
        f"rejects_table = '{source.name}_rejects', rejects_scan = '{source.name}_scans')"
    )
    if not line.unreadable_records:
        return f"select {select}, {origin.format(row='row_number() over ()')} from {reader}"
    # The reader skips unreadable records, so a parsed row's place is its number among the
    # records that were read. DuckDB checks the encoding of the columns a query reads only: the
    # hash reads them all, so the same records are skipped whatever a query selects.
    skipped = ", ".join(str(record) for record in line.unreadable_records)
    every_column = ", ".join(f"c{i}" for i in range(len(line.file_columns)))
    return (
        f"select {select}, {origin.format(row='records.record')} "
        f"from (select *, row_number() over () as parsed_index from {reader} where hash({every_column}) is not null) as parsed "
        f"inner join (select range as record, row_number() over (order by range) as parsed_index "
        f"from range(1, {line.rows_read + 1}) where range not in ({skipped})) as records using (parsed_index)"
    )


@dataclass(frozen=True)
class ManifestLine:
    file: str
    month: str | None
    path: str
    file_columns: tuple[str, ...]
    rows_read: int | None
    unreadable_records: tuple[int, ...]


def _manifest_lines(conn: duckdb.DuckDBPyConnection, source: str) -> list[ManifestLine]:
    found = conn.execute(
        f"""
        select
            manifest.source_file, manifest.delivery_month, manifest.path, manifest.file_columns, manifest.rows_read,
            coalesce(list(rejects.source_row order by rejects.source_row) filter (where rejects.source_row is not null), [])
        from {LOAD_MANIFEST} as manifest
        left join raw.csv_rejects as rejects
            on rejects.source = manifest.source and rejects.source_file = manifest.source_file
            -- rejects of a file are known once a staging model read it
            and manifest.unreadable_rows is not null
        where manifest.source = $source
        group by all
        order by manifest.source_file
        """,
        {"source": source},
    ).fetchall()
    return [
        ManifestLine(file, month, path, tuple(columns), read, tuple(records))
        for file, month, path, columns, read, records in found
    ]


def _create_raw_view(conn: duckdb.DuckDBPyConnection, source: RawSource) -> None:
    """raw.<source>: a view of every file the manifest lists for the source, read in place."""
    _drop_raw_relation(conn, source.name)
    readers = [_file_reader(source, line) for line in _manifest_lines(conn, source.name)]
    if not readers:
        empty = ", ".join(f"null::varchar as {c}" for c in source.columns)
        readers = [
            f"select {empty}, null::varchar as source_file, null::bigint as source_row, null::varchar as delivery_month where false"
        ]
    conn.execute(f"create view raw.{source.name} as\n" + "\nunion all\n".join(readers))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def register_file(
    conn: duckdb.DuckDBPyConnection, source: RawSource, path: Path, raw_dir: Path, counted: dict[tuple[str, str], tuple]
) -> FileLoad:
    """The file's line in the load manifest: where it is, its size, time, checksum and columns.
    Its rows are counted when a staging model reads it; a file registered again unchanged keeps
    its counts from `counted` ((file, sha256) -> (rows read, unreadable)), since nothing reads it again."""
    header = file_header(conn, path)
    _map_columns(source, path, header)
    before = _fingerprint(path)
    checksum = _sha256(path)
    if time.time_ns() - before[1] < 1_000_000_000:
        # hashing a small file takes less time than a writer's pause: a file touched in the last
        # second gets a second look
        time.sleep(0.2)
    if _fingerprint(path) != before:
        raise RawFileChanged(f"{relative_name(path, raw_dir)} changed while it was read (still being written?)")
    month = delivery_month(path, raw_dir)
    load = FileLoad(source.name, relative_name(path, raw_dir), month, *before, checksum, _extra_columns(source, header))
    counts = counted.get((load.file, checksum), (None, None))
    write_manifest_line(conn, load, path, *counts, header)
    return load


def write_manifest_line(
    conn: duckdb.DuckDBPyConnection,
    load: FileLoad,
    path: Path,
    rows_read: int | None,
    unreadable: int | None,
    columns: list[str] | None = None,
) -> None:
    conn.execute(
        f"""
        insert into {LOAD_MANIFEST} by name
        select
            $source as source, $file as source_file, $month as delivery_month, $size as size_bytes,
            make_timestamptz($mtime_us) as modified_at, $sha256 as sha256, $read::bigint as rows_read,
            $unreadable::bigint as unreadable_rows, now() as loaded_at, $path as path, $columns::varchar[] as file_columns
        """,
        {
            "source": load.source,
            "file": load.file,
            "month": load.delivery_month,
            "size": load.size,
            "mtime_us": load.mtime_ns // 1000,
            "sha256": load.sha256,
            "read": rows_read,
            "unreadable": unreadable,
            "path": str(path.resolve()),
            "columns": columns,
        },
    )


def _forget_manifest(conn: duckdb.DuckDBPyConnection, source: str, months: tuple[str, ...] | None) -> None:
    """The manifest lines of the files a load replaces: all of the source's, or those of its
    top-level files and of `months`."""
    conn.execute(
        f"delete from {LOAD_MANIFEST} where source = $source and ($all or delivery_month is null or list_contains($months::varchar[], delivery_month))",
        {"source": source, "all": months is None, "months": list(months or ())},
    )


@dataclass(frozen=True)
class SourceLoad:
    files: list[FileLoad]
    upgraded: bool
    """The warehouse held this source's raw rows as a text table (an earlier version): dropped,
    and every file of the source registered again."""


def load_source(
    conn: duckdb.DuckDBPyConnection,
    source: RawSource,
    raw_dir: Path,
    months: tuple[str, ...] | None = None,
    every_loaded_month: bool = False,
) -> SourceLoad:
    """Register the source's files in the load manifest and make `raw.<source>` a view of them.

    `months=None` registers every file. Otherwise only those months' delivery folders (and the
    top-level files) are registered again; the other months' lines stay, unless
    `every_loaded_month` (a rebuild from the files as they are now), which registers again every
    month the manifest lists too, so a file gone since is forgotten. Nothing is parsed here: the
    staging model reads the files through the view, once (`record_scan`).
    """
    check_raw_dir(raw_dir, months, source)
    _create_rejects_table(conn)
    with transaction(conn):
        # an earlier version kept the rows as a text table and its manifest lines no path
        upgraded = _drop_raw_relation(conn, source.name) == "BASE TABLE" or bool(
            scalar(conn, f"select count(*) from {LOAD_MANIFEST} where source = $s and path is null", {"s": source.name})
        )
        if upgraded:
            months = None
        elif every_loaded_month and months is not None:
            listed = rows(
                conn,
                f"select distinct delivery_month from {LOAD_MANIFEST} where source = $s and delivery_month is not null",
                {"s": source.name},
            )
            months = tuple(sorted(set(months) | {month for (month,) in listed}))
        counted = {
            (file, checksum): (read, unreadable)
            for file, checksum, read, unreadable in rows(
                conn,
                f"select source_file, sha256, rows_read, unreadable_rows from {LOAD_MANIFEST} where source = $s",
                {"s": source.name},
            )
        }
        _forget_manifest(conn, source.name, months)
        files = [register_file(conn, source, path, raw_dir, counted) for path in source.files(raw_dir, months)]
        _create_raw_view(conn, source)
        record_delivery_versions(conn, source.name, delivery_versions(files), months)
    return SourceLoad(files, upgraded)


def changed_files(conn: duckdb.DuckDBPyConnection, raw_dir: Path, source: str | None = None) -> list[str]:
    """The files the load manifest lists (for `source`, or all) that are now missing from `raw_dir`
    or differ from what was loaded (size, then checksum), as `2024-03/orders.csv (changed)`."""
    if not has_column(conn, "raw", "load_manifest"):
        return []
    found = []
    for file, size, checksum in rows(
        conn,
        f"select source_file, size_bytes, sha256 from {LOAD_MANIFEST} where sha256 is not null "
        "and ($source is null or source = $source) order by source_file",
        {"source": source},
    ):
        path = raw_dir / file
        if not path.is_file():
            found.append(f"{file} (missing)")
        elif path.stat().st_size != size or _sha256(path) != checksum:
            found.append(f"{file} (changed)")
    return found


def check_unchanged(conn: duckdb.DuckDBPyConnection, raw_dir: Path, source: str | None = None) -> None:
    """A full refresh rebuilds every table from the delivery files, the only record of the raw
    rows: refused when one of them (of `source`, or of any) is gone or changed since it was loaded."""
    changed = changed_files(conn, raw_dir, source)
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise RawInputError(
            f"--full-refresh: {shown} since loaded; nothing was rebuilt. Restore the files, or add "
            "--rebuild-from-files to rebuild from the files as they are now"
        )


def record_scan(conn: duckdb.DuckDBPyConnection, source: str, staged_table: str, months: tuple[str, ...] | None) -> None:
    """After a staging model read raw.<source> (every file, or those of `months` and the top-level
    ones): the unreadable CSV records it met go to raw.csv_rejects, each file read gets its row
    counts in the manifest, and a file read for the first time with unreadable records gets its
    staged rows renumbered by record and its reader in the view told which records it skips."""
    if not is_file_view(conn, source):
        return  # a source adapter's table: nothing was read from files
    scanned = f"""
        select
            source_file, path, delivery_month, unreadable_rows is null as first_read, size_bytes,
            epoch_us(modified_at) as modified_us
        from {LOAD_MANIFEST}
        where source = $source and ($all or list_contains($months, coalesce(delivery_month, '')))
    """
    bound = {"source": source, "all": months is None, "months": list(months or ())}
    for file, path, size, modified_us in rows(
        conn,
        f"select source_file, path, size_bytes, modified_us from ({scanned}) where path is not null",
        bound,
    ):
        stat = Path(path).stat() if Path(path).is_file() else None
        if stat is not None and (stat.st_size, stat.st_mtime_ns // 1000) != (size, modified_us):
            raise RawFileChanged(f"{file} changed after the raw step registered it (still being written?); run again")
    rejects_table, scans_table = f"{source}_rejects", f"{source}_scans"
    if scalar(conn, "select count(*) from duckdb_tables() where temporary and table_name = $t", {"t": rejects_table}):
        met = f"""
            select scans.file_path as path, rejects.line - 1 as source_row,
                string_agg(distinct rejects.error_type, '; ' order by rejects.error_type) as error_type,
                first(rejects.csv_line order by rejects.column_idx) as raw_line
            from temp.{rejects_table} as rejects
            inner join temp.{scans_table} as scans using (scan_id, file_id)
            group by all
        """
    else:
        met = "select null::varchar as path, null::bigint as source_row, null::varchar as error_type, null::varchar as raw_line where false"
    conn.execute(
        f"create or replace temp table scan_rejects as select scanned.*, met.* exclude (path) from ({scanned}) as scanned inner join ({met}) as met using (path)",
        bound,
    )
    conn.execute(
        "delete from raw.csv_rejects where source = $source and ($all or list_contains($months, coalesce(delivery_month, '')))",
        bound,
    )
    conn.execute(
        "insert into raw.csv_rejects select $source, source_file, source_row, error_type, raw_line, delivery_month from scan_rejects order by source_file, source_row",
        {"source": source},
    )
    # rows of a file read for the first time are numbered among the records read; renumber them by record
    renumbered = rows(conn, "select distinct source_file from scan_rejects where first_read")
    for (file,) in renumbered:
        conn.execute(
            f"""
            update {staged_table} as staged
            set source_row = records.record
            from (
                select range as record, row_number() over (order by range) as parsed_index
                from range(1, (select count(*) from {staged_table} where source_file = $file)
                    + (select count(*) from scan_rejects where source_file = $file) + 1)
                where range not in (select source_row from scan_rejects where source_file = $file)
            ) as records
            where staged.source_file = $file and staged.source_row = records.parsed_index
            """,
            {"file": file},
        )
    conn.execute(
        f"""
        update {LOAD_MANIFEST} as manifest
        set
            rows_read = counted.staged + counted.unreadable,
            unreadable_rows = counted.unreadable
        from (
            select
                scanned.source_file,
                (select count(*) from {staged_table} as staged where staged.source_file = scanned.source_file) as staged,
                (select count(*) from scan_rejects where scan_rejects.source_file = scanned.source_file) as unreadable
            from ({scanned}) as scanned
        ) as counted
        where manifest.source = $source and manifest.source_file = counted.source_file
        """,
        bound,
    )
    conn.execute("drop table scan_rejects")
    conn.execute(f"drop table if exists temp.{rejects_table}")
    conn.execute(f"drop table if exists temp.{scans_table}")
    if renumbered:
        _create_raw_view(conn, _source(source))


def _source(name: str) -> RawSource:
    return next(source for source in SOURCES if source.name == name)


def preflight(raw_dir: Path, months: tuple[str, ...] | None = None) -> list[Path]:
    """Check the raw directory and every file's header before anything is written."""
    check_raw_dir(raw_dir, months)
    conn = duckdb.connect()
    files = []
    try:
        for source in SOURCES:
            for path in source.files(raw_dir, months):
                _map_columns(source, path, file_header(conn, path))
                files.append(path)
    finally:
        conn.close()
    return files
