"""The delivery files on Spark, with DuckDB's rules (lib/ingest.py): the same files per source, the
same header checks and column matching, every value as text, each row numbered by its record in
its file, and the records the CSV reader cannot read set apart with a reason.

raw.<source> and raw.csv_rejects are session views here (Spark reads the files in place, as
DuckDB's views do); lib/dialects.py gives the models their Spark names.

A CSV file is read whole by one task (`multiLine`, which also keeps a quoted line break inside
its record), so its records keep their order and `monotonically_increasing_id()` counts them;
a delivery of many files is read in parallel, a file at a time per core.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from churn_pipeline.lib import ingest
from churn_pipeline.lib.raw_sources import SOURCES, RawInputError, RawSource, delivery_month, file_format, relative_name

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from churn_pipeline.lib.adapters import Adapter

CORRUPT = "_unreadable_record"
# Spark decodes invalid UTF-8 as U+FFFD where DuckDB's reader refuses the record: such a record
# is set apart as DuckDB sets it apart (a file that holds U+FFFD itself loses those rows here)
REPLACEMENT_CHARACTER = "\ufffd"


def session_view(schema: str, table: str) -> str:
    """The session view standing for `schema.table` (Spark's temporary views have no schema)."""
    return f"{schema}__{table}"


@dataclass(frozen=True)
class SparkFile:
    source: str
    file: str
    month: str | None
    path: Path
    columns: tuple[str, ...]


def file_header(path: Path) -> list[str]:
    return _parquet_columns(path) if file_format(path) == "parquet" else ingest._csv_header(path)


def delivery_files(raw_dir: Path, source: RawSource, paths: list[Path] | None = None) -> list[SparkFile]:
    """The source's files (or `paths`) with their columns as written, checked as DuckDB's raw step checks them."""
    found = []
    for path in source.files(raw_dir) if paths is None else paths:
        header = file_header(path)
        ingest._map_columns(source, path, header)
        found.append(SparkFile(source.name, relative_name(path, raw_dir), delivery_month(path, raw_dir), path, tuple(header)))
    return found


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
        raise RawInputError(f"{path.name}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None


def _read_file(spark: SparkSession, source: RawSource, delivered: SparkFile) -> DataFrame:
    """One file's records: the contract's columns as text, source_file, source_row, delivery_month,
    and for a record that cannot be read, DuckDB's name for the error and the record's text."""
    from functools import reduce

    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    by_key = {written.strip().lower(): f"c{i}" for i, written in enumerate(delivered.columns)}
    positional = [f"c{i}" for i in range(len(delivered.columns))]
    if file_format(delivered.path) == "parquet":
        frame = spark.read.parquet(str(delivered.path)).toDF(*positional)
        frame = frame.select(
            *[F.col(c).cast("string") for c in positional],
            (F.col("_metadata.row_index") + 1).alias("source_row"),
            F.lit(None).cast("string").alias("_error"),
            F.lit(None).cast("string").alias("_raw_line"),
        )
    else:
        schema = StructType([StructField(c, StringType()) for c in positional] + [StructField(CORRUPT, StringType())])
        frame = (
            spark.read.schema(schema)
            .options(header=True, multiLine=True, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT)
            .options(sep=",", quote='"', escape='"', encoding="UTF-8", enforceSchema=True)
            .csv(str(delivered.path))
            .withColumn("source_row", F.monotonically_increasing_id() + 1)
        )
        undecodable = reduce(
            lambda a, b: a | b, [F.coalesce(F.col(c).contains(REPLACEMENT_CHARACTER), F.lit(False)) for c in positional]
        )
        # a quoted field is one field, whatever commas it holds
        fields = F.size(F.split(F.regexp_replace(F.col(CORRUPT), '"([^"]|"")*"', ""), ","))
        frame = frame.select(
            *positional,
            "source_row",
            F.when(F.col(CORRUPT).isNotNull() & (fields > len(positional)), F.lit("TOO MANY COLUMNS"))
            .when(F.col(CORRUPT).isNotNull(), F.lit("MISSING COLUMNS"))
            .when(undecodable, F.lit("INVALID ENCODING"))
            .alias("_error"),
            # DuckDB writes an undecodable byte of the record as '?'
            F.translate(F.coalesce(F.col(CORRUPT), F.concat_ws(",", *positional)), REPLACEMENT_CHARACTER, "?").alias("_raw_line"),
        )
    return frame.select(
        *[(F.col(by_key[c]) if c in by_key else F.lit(None).cast("string")).alias(c) for c in source.columns],
        F.lit(delivered.file).alias("source_file"),
        F.col("source_row"),
        F.lit(delivered.month).cast("string").alias("delivery_month"),
        "_error",
        "_raw_line",
    )


def register_raw(spark: SparkSession, raw_dir: Path) -> dict[str, list[SparkFile]]:
    """raw.<source> for every source and raw.csv_rejects, as session views of the delivery files."""
    return {source.name: register_source(spark, raw_dir, source) for source in SOURCES}


REJECT_COLUMNS = ("source", "source_file", "source_row", "error_type", "raw_line", "delivery_month")


def register_source(spark: SparkSession, raw_dir: Path, source: RawSource, paths: list[Path] | None = None) -> list[SparkFile]:
    """raw.<source> as a session view of its delivery files (or of `paths`); its unreadable records
    join raw.csv_rejects (the union of every source registered so far in this session)."""
    from functools import reduce

    from pyspark.sql import functions as F

    files = delivery_files(raw_dir, source, paths)
    frames = [_read_file(spark, source, delivered) for delivered in files]
    rejects_view = _rejects_view(source)
    if frames:
        rows = reduce(lambda a, b: a.unionByName(b), frames)
        rows.where(F.col("_error").isNull()).drop("_error", "_raw_line").createOrReplaceTempView(session_view("raw", source.name))
        rows.where(F.col("_error").isNotNull()).select(
            F.lit(source.name).alias("source"),
            "source_file",
            "source_row",
            F.col("_error").alias("error_type"),
            F.col("_raw_line").alias("raw_line"),
            "delivery_month",
        ).createOrReplaceTempView(rejects_view)
    else:
        empty = ", ".join(f"cast(null as string) as {c}" for c in source.columns)
        spark.sql(
            f"select {empty}, cast(null as string) as source_file, cast(null as bigint) as source_row, "
            "cast(null as string) as delivery_month where false"
        ).createOrReplaceTempView(session_view("raw", source.name))
        spark.sql(
            "select cast(null as string) as source, cast(null as string) as source_file, cast(null as bigint) as source_row, "
            "cast(null as string) as error_type, cast(null as string) as raw_line, cast(null as string) as delivery_month "
            "where false"
        ).createOrReplaceTempView(rejects_view)
    registered = sorted(view for view in _raw_views(spark) if view.startswith(REJECTS_PREFIX))
    columns = ", ".join(REJECT_COLUMNS)
    union = " union all ".join(f"select {columns} from {view}" for view in registered)
    spark.sql(union).createOrReplaceTempView(session_view("raw", "csv_rejects"))
    return files


REJECTS_PREFIX = session_view("raw", "csv_rejects__")


def _rejects_view(source: RawSource) -> str:
    """The session view of one source's unreadable records (raw.csv_rejects unions them)."""
    return f"{REJECTS_PREFIX}{source.name}"


def by_source(files: list[SparkFile]) -> dict[str, list[SparkFile]]:
    """Registered files grouped by the source they were read for (an adapter's file tables are
    sources of their own), as register_manifest takes them."""
    grouped: dict[str, list[SparkFile]] = {}
    for delivered in files:
        grouped.setdefault(delivered.source, []).append(delivered)
    return grouped


def _raw_views(spark: SparkSession) -> list[str]:
    return [table.name for table in spark.catalog.listTables() if table.isTemporary and table.name.startswith("raw__")]


def clear_raw(spark: SparkSession) -> None:
    """Drop the session's raw views, so a run in a reused session reads only its own files."""
    for view in _raw_views(spark):
        spark.catalog.dropTempView(view)


def register_through_adapter(
    spark: SparkSession, adapter: Adapter, contract: RawSource, raw_dir: Path, options: dict[str, object]
) -> list[SparkFile]:
    """raw.<contract> as a session view of the adapter's `<contract>.sql` over its files, each
    registered as raw.src_<table> with its unreadable records in raw.csv_rejects (as
    adapters.load_through_adapter does on DuckDB)."""
    from churn_pipeline.lib import adapters, dialects

    sql = adapter.sql_for(contract.name)
    if sql is None:
        return register_source(spark, raw_dir, contract, paths=[])
    files = []
    for spec in adapters.read_specs(adapter, sql):
        paths = adapters.spec_files(adapter, spec, raw_dir)
        files += register_source(spark, raw_dir, adapters.source_for_files(spec, paths[0], file_header(paths[0])), paths)
    bound = adapters.bound_options(adapter, contract.name, sql, options)
    adapter_file = f"{adapter.name}/{contract.name}.sql"
    columns = ", ".join(f"cast({c} as varchar) as {c}" for c in contract.columns)
    query = dialects.to_spark(
        f"select {columns}, source_file::varchar as source_file, source_row::bigint as source_row, "
        f"null::varchar as delivery_month from ({sql})"
    )
    view = session_view("raw", contract.name)
    try:
        spark.sql(query, args=bound or None).createOrReplaceTempView(view)
        repeated = spark.sql(
            f"select source_file, source_row, count(*) from {view} group by source_file, source_row "
            "having count(*) > 1 order by source_file, source_row limit 1"
        ).collect()
    except Exception as exc:  # Spark's analysis errors name the column or function
        raise adapters.AdapterError(f"{adapter_file}: {str(exc).splitlines()[0]}") from None
    if repeated:
        raise adapters.repeated_row_key_error(adapter_file, *repeated[0])
    return files


MANIFEST_SCHEMA = (
    "source string, source_file string, delivery_month string, size_bytes bigint, modified_at timestamp, "
    "sha256 string, rows_read bigint, unreadable_rows bigint, loaded_at timestamp, path string, file_columns array<string>"
)


def register_manifest(spark: SparkSession, files: dict[str, list[SparkFile]]) -> None:
    """raw.load_manifest (a session view): a line per delivery file (size, time, SHA-256, columns),
    its rows counted as DuckDB counts them, once staging has read it: rows staged from the file
    plus its unreadable records. Call it after the staging models are built."""
    from datetime import UTC, datetime

    from churn_pipeline.lib.quality import STAGED_TABLES

    # a source adapter's files (raw.src_<table>) are counted where they are read
    tables = {source: STAGED_TABLES.get(source, session_view("raw", source)) for source in files}
    counted = {
        (source, file): staged
        for source, table in tables.items()
        for file, staged in spark.sql(f"select source_file, count(*) from {table} group by source_file").collect()
    }
    unreadable = {
        (source, file): rows
        for source, file, rows in spark.sql(
            f"select source, source_file, count(*) from {session_view('raw', 'csv_rejects')} group by source, source_file"
        ).collect()
    }
    now = datetime.now(UTC).replace(tzinfo=None)
    lines = []
    for source, delivered_files in files.items():
        for delivered in delivered_files:
            stat = delivered.path.stat()
            key = (source, delivered.file)
            skipped = unreadable.get(key, 0)
            lines.append(
                (
                    source,
                    delivered.file,
                    delivered.month,
                    stat.st_size,
                    datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None),
                    ingest._sha256(delivered.path),
                    counted.get(key, 0) + skipped,
                    skipped,
                    now,
                    str(delivered.path.resolve()),
                    list(delivered.columns),
                )
            )
    spark.createDataFrame(lines, MANIFEST_SCHEMA).createOrReplaceTempView(session_view("raw", "load_manifest"))
