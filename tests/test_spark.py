"""The same SQL models on Spark publish the same tables as on DuckDB (one Spark session for the
module: starting one takes seconds).

Rendering: every model becomes Spark SQL that calls only functions Spark has; each construct that
runs on both engines but means something else on one (a silent difference) gives the same value
on both. Tables: each data set's delivery files are read by each engine (lib/ingest.py, lib/spark_ingest.py),
each builds every model from them (Spark with the rendering of the same files), and every table
and view is compared with DuckDB's:
integers and text exactly, floats within 1e-9 relative, nulls equal, in any row order."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import duckdb
import polars as pl
import pytest
import sqlglot
from sqlglot import exp
from test_adapters import EXTERNAL, FOODIE_PLANS, FOODIE_SUBS, REPEATED_ROW_KEY, RETAIL, doubling_adapter

from churn_pipeline.defs.marts import compute_marts
from churn_pipeline.lib import dialects, quality, spark_build, sql_models
from churn_pipeline.lib.adapters import AdapterError
from churn_pipeline.lib.generate import GeneratorConfig, generate
from churn_pipeline.lib.settings import PipelineSettings
from churn_pipeline.lib.spark_build import spark_session
from churn_pipeline.lib.spark_ingest import register_through_adapter
from churn_pipeline.lib.table_docs import TABLES
from churn_pipeline.lib.warehouse_build import build_warehouse
from churn_pipeline.lib.warehouse_tables import SparkTables
from helpers import write_raw


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory):
    session = spark_session(tmp_path_factory.mktemp("spark-warehouse"))
    yield session
    session.stop()


def build_both(spark, raw_dir: Path, work: Path, **settings: object) -> duckdb.DuckDBPyConnection:
    """DuckDB's warehouse, and Spark's from the same delivery files (in `work`), each with every
    published table computed by the marts' polars functions from that engine's tables."""
    pipeline_settings = PipelineSettings(raw_dir=str(raw_dir), **settings)
    conn = build_duckdb(pipeline_settings)
    spark_build.build_warehouse(spark, pipeline_settings, work / "spark-warehouse")
    compute_marts(SparkTables(spark, work / "spark-warehouse"), pipeline_settings)
    return conn


def build_duckdb(settings: PipelineSettings) -> duckdb.DuckDBPyConnection:
    """DuckDB's warehouse from the delivery files, every published table in `marts`."""
    conn = duckdb.connect()
    build_warehouse(conn, settings)
    compute_marts(conn, settings)
    return conn


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """Instants as UTC microseconds, whole numbers as Int64, others Float64, rows sorted."""
    columns = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is not None:
                column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            column = column.dt.cast_time_unit("us")
        elif isinstance(dtype, pl.Decimal) and dtype.scale == 0:
            column = column.cast(pl.Int64)  # DuckDB's sum of integers is a HUGEINT, Spark's a BIGINT
        elif isinstance(dtype, pl.Decimal) or dtype in (pl.Float32, pl.Float64):
            column = column.cast(pl.Float64)
        elif dtype.is_integer():
            column = column.cast(pl.Int64)
        columns.append(column)
    frame = frame.select(columns)
    return frame.sort(frame.columns, nulls_last=True)


def differences(spark_frame: pl.DataFrame, duckdb_frame: pl.DataFrame) -> list[str]:
    got, want = comparable(spark_frame), comparable(duckdb_frame)
    if got.columns != want.columns:
        return [f"columns {got.columns} != {want.columns}"]
    if got.height != want.height:
        return [f"{got.height} rows != {want.height}"]
    problems = []
    for name in got.columns:
        a, b = got[name], want[name]
        if not a.is_null().equals(b.is_null()):
            problems.append(f"{name}: nulls differ")
        elif a.dtype == pl.Float64:
            both = pl.DataFrame({"a": a, "b": b}).drop_nulls()
            if not ((both["a"] - both["b"]).abs() <= 1e-9 * both["b"].abs().clip(lower_bound=1.0)).all():
                problems.append(f"{name}: values differ")
        elif a.dtype != b.dtype or not a.equals(b):
            problems.append(f"{name}: values differ ({a.dtype} vs {b.dtype})")
    return problems


PUBLISHED = [table.name for table in TABLES if table.parquet]


def assert_same_tables(spark, conn: duckdb.DuckDBPyConnection) -> None:
    """Every SQL model, every published table and the accounting agree between the engines."""
    checked, failures = 0, {}
    tables = [model.table for model in sql_models.load_models()]
    tables += [f"marts.{name}" for name in PUBLISHED if f"marts.{name}" not in tables]
    for table in tables:
        problems = differences(pl.from_arrow(spark.table(table).toArrow()), conn.sql(f"from {table}").pl())
        checked += 1
        if problems:
            failures[table] = problems
    # the accounting: per source raw rows = loaded + quarantined, per file rows read = staged + unreadable
    manifest = "select source, source_file, delivery_month, size_bytes, sha256, rows_read, unreadable_rows from raw.load_manifest"
    for name, sql in {
        "reconciliation": quality.RECONCILIATION_SQL,
        "file reconciliation": quality.FILE_RECONCILIATION_SQL,
        "quarantine reasons": quality.QUARANTINE_REASONS_SQL,
        "load manifest": manifest,
    }.items():
        problems = differences(pl.from_arrow(spark.sql(dialects.to_spark(sql)).toArrow()), conn.sql(sql).pl())
        checked += 1
        if problems:
            failures[name] = problems
    assert not failures
    assert checked == len(sql_models.load_models()) + len(PUBLISHED) - 1 + 4  # the quarantine is a model


UNREADABLE_ORDERS = (
    b"\xef\xbb\xbforder_id,customer_id,ordered_at,amount\n"
    b'bad1,"bad\n1",2024-01-05T00:00:00Z,10\n'
    b"bad2,bad2,2024-01-06T00:00:00Z,1,extra\n"
    b"bad3,bad3,2024-01-07T00:00:00Z,\xff\n"
    b"bad4,bad4,2024-01-08T00:00:00Z,4\n"
    b"bad5,bad5\n"
)


def test_generated_with_zones_rules_and_unreadable_records(spark, tmp_path: Path) -> None:
    """The generator's data (the embedded sample's kind, with every kind of bad row) under settings
    unlike the defaults, which the adapters and the worked example use: a reporting zone with DST,
    naive source times in another zone, a downgrade counted as churn and a 60-day inactivity window;
    and records the CSV reader cannot read, set apart alike on both engines: a quoted line break
    is one record; too many or too few fields and invalid UTF-8 are quarantined by record number."""
    raw = tmp_path / "raw"
    generate(raw, GeneratorConfig(customers=400, order_customers=200, months=14, seed=11, messy_share=0.05))
    (raw / "orders_unreadable.csv").write_bytes(UNREADABLE_ORDERS)
    conn = build_both(
        spark,
        raw,
        tmp_path,
        timezone="America/New_York",
        source_timezone="Europe/Berlin",
        downgrade_is_churn=True,
        inactivity_days=60,
    )
    # quarantined rows of every kind and lifecycle contradictions: the cases the rewrites touch
    assert conn.sql("select count(distinct reason) from marts.quarantine").fetchall()[0][0] >= 10
    contradictions = "select count(*) from staging.int_subscription_events_lifecycle where lifecycle_error is not null"
    assert conn.sql(contradictions).fetchall()[0][0] > 0
    reasons = conn.sql(
        "select source_row, reason from marts.quarantine where source_file = 'orders_unreadable.csv' order by 1"
    ).fetchall()
    assert reasons == [
        (2, "unreadable CSV row: too many columns"),
        (3, "unreadable CSV row: invalid encoding"),
        (5, "unreadable CSV row: missing columns"),
    ]
    assert_same_tables(spark, conn)


def test_every_model_renders_to_functions_spark_has(spark) -> None:
    """A DuckDB-only construct outside a macro (a function Spark lacks, a clause it cannot parse)
    fails here, with the model's name."""
    known = {row.function.split(".")[-1].lower() for row in spark.sql("show functions").collect()}
    problems = {}
    for model in sql_models.load_models():
        statements = [dialects.to_spark(model.render())]
        if model.post_hook:
            statements.append(dialects.post_hook_to_spark(model.post_hook.replace("{{ this }}", model.table), ["event_id"]))
        for statement in statements:
            missing = sorted(spark_function_names(statement) - known)
            if missing:
                problems[model.name] = missing
    assert problems == {}


def test_the_rendering_check_catches_a_duckdb_only_function(spark) -> None:
    known = {row.function.split(".")[-1].lower() for row in spark.sql("show functions").collect()}
    rendered = dialects.to_spark("select timezone('UTC', t), epoch_us(t), month_of(t, 'UTC') from x")
    assert spark_function_names(rendered) - known == {"timezone"}


def spark_function_names(statement: str) -> set[str]:
    """The functions a Spark statement calls, by the names Spark SQL spells them with."""
    names = set()
    for node in sqlglot.parse_one(statement, read="spark").find_all(exp.Func):
        call = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\(", node.sql(dialect="spark"))
        if call and call.group(1).upper() not in ("CAST", "TRY_CAST"):
            names.add(call.group(1).lower())
    return names


def duckdb_value(expression: str):
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    sql_models.prepare_connection(conn)
    return conn.sql(f"select {expression} as v").fetchall()[0][0]


def spark_value(spark, expression: str):
    return spark.sql(dialects.to_spark(f"select {expression} as v")).collect()[0]["v"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # a list counts from 1 in DuckDB, an array from 0 in Spark
        ("lifecycle_event_types()[2]", "subscribed"),
        ("(select lifecycle_event_types()[r] from (select 8 as r))", "cancelled"),
        # DuckDB's list_position is null where Spark's array_position is 0
        ("list_position(lifecycle_event_types(), 'refunded')", None),
        ("list_position(lifecycle_event_types(), 'expired')", 9),
        # to_json keeps a null field in DuckDB, leaves it out in Spark by default
        ("to_json(struct_pack(a := 1, b := null::varchar))", '{"a":1,"b":null}'),
        # bigint / 86400.0 is a double in DuckDB, a decimal(28,7) in Spark
        ("(172800::bigint + 1) / 86400.0", (172800 + 1) / 86400.0),
        # the DST fall-back in New York repeats 01:00-02:00: the first occurrence (EDT, UTC-4)
        ("parse_instant('2024-11-03 01:39:01', 'America/New_York')::varchar", "2024-11-03 05:39:01+00"),
        # the spring-forward gap skips 02:00-03:00: read with the offset before it (EST, UTC-5)
        ("parse_instant('2024-03-10 02:30:00', 'America/New_York')::varchar", "2024-03-10 07:30:00+00"),
        ("parse_instant('2024-06-01T12:00:00+09:00', 'UTC')::varchar", "2024-06-01 03:00:00+00"),
        ("parse_instant('not a time', 'UTC')", None),
        # the month of an instant is the reporting zone's: 03:00 UTC on 1 March is still February in New York
        ("month_of('2024-03-01 03:00:00+00'::timestamptz, 'America/New_York')::varchar", "2024-02-01"),
        ("month_of('2024-03-01 03:00:00+00'::timestamptz, 'UTC')::varchar", "2024-03-01"),
        ("parse_number(' 12.5 ')", 12.5),
        ("parse_number('inf')", None),
        ("parse_number('NaN')", None),
        ("clean_text(' N/A ')", None),
        ("clean_text(' Basic ')", "Basic"),
        ("parse_month('2024-03')::varchar", "2024-03-01"),
        ("parse_month('2024-03-15')::varchar", "2024-03-15"),
        ("seconds_between('2024-01-01 00:00:00.9+00'::timestamptz, '2024-01-01 00:00:02.1+00'::timestamptz)", 2),
        ("lifecycle_key('2024-01-01 00:00:00+00'::timestamptz, 2) % 10", 2),
    ],
)
def test_same_value_on_both_engines(spark, expression: str, expected) -> None:
    got_duckdb, got_spark = duckdb_value(expression), spark_value(spark, expression)
    if expression.endswith("::varchar") and got_spark is not None:
        got_spark = _as_duckdb_text(got_spark)
    assert got_duckdb == expected
    assert got_spark == expected


def _as_duckdb_text(value) -> str:
    """Spark's value of a `::varchar` cast, spelled as DuckDB spells it (`+00` for UTC)."""
    text = str(value)
    return text + "+00" if len(text) == 19 and text[10] == " " else text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # FILTER with OVER: Spark takes FILTER only on a plain aggregate
        (
            "select sum(x) filter (where x > 1) over (order by x rows between unbounded preceding and current row) as v"
            " from (values (1), (2), (3)) as t(x) order by x",
            [None, 2, 5],
        ),
        # a named window built on another
        (
            "select count(*) over so_far as v from (values (1), (2), (3)) as t(x)"
            " window w as (order by x), so_far as (w rows between unbounded preceding and current row) order by x",
            [1, 2, 3],
        ),
        # first(x order by k), mode with ties (the smallest wins)
        ("select first(x order by k) as v from (values ('b', 2), ('a', 1), ('c', 3)) as t(x, k)", ["a"]),
        ("select mode(x order by x) as v from (values (3), (1), (3), (1), (2)) as t(x)", [1]),
        # an interval of months and a list of months cast inside unnest
        (
            "select unnest(generate_series('2024-01-01'::date - to_months(1), '2024-02-01'::date, interval 1 month))::date as v",
            ["2023-12-01", "2024-01-01", "2024-02-01"],
        ),
    ],
)
def test_same_rows_on_both_engines(spark, query: str, expected: list) -> None:
    conn = duckdb.connect()
    got_duckdb = [row[0] for row in conn.sql(query).fetchall()]
    got_spark = [row["v"] for row in spark.sql(dialects.to_spark(query)).collect()]
    assert [str(v) for v in got_duckdb] == [str(v) for v in expected]
    assert [str(v) for v in got_spark] == [str(v) for v in expected]


# the client runs in a process of its own: a process that holds a local Spark session cannot open a remote one
@pytest.mark.slow
def test_the_worked_example_through_a_spark_connect_server(tmp_path: Path, worked_example_dir: Path) -> None:
    """A local Spark Connect server, started from the pyspark package and stopped by its PID: the
    pipeline run through it (`churn-pipeline run --engine spark --spark-remote`), as on a cluster,
    publishes DuckDB's tables, file by file."""
    import socket
    import subprocess
    import sys
    import time

    import pyspark

    home = Path(pyspark.__file__).parent
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_PID_DIR": str(tmp_path),
        "SPARK_LOG_DIR": str(tmp_path),
        "SPARK_IDENT_STRING": "churn-pipeline-test",
    }
    subprocess.run(
        [
            str(home / "sbin" / "start-connect-server.sh"),
            *("--master", "local[2]"),
            *("--conf", f"spark.connect.grpc.binding.port={port}"),
            *("--conf", f"spark.sql.warehouse.dir={tmp_path / 'server-warehouse'}"),
        ],
        env=environment,
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    pid_files = list(tmp_path.glob("*SparkConnectServer*.pid"))
    assert len(pid_files) == 1, sorted(path.name for path in tmp_path.iterdir())
    pid = int(pid_files[0].read_text().strip())
    try:
        deadline = time.monotonic() + 180
        while True:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the Spark Connect server did not answer in 180 s"
            time.sleep(1)
        run = [sys.executable, "-m", "churn_pipeline.cli", "run", "--raw-dir", str(worked_example_dir)]
        on_spark = subprocess.run(
            [
                *run,
                *("--engine", "spark", "--spark-remote", f"sc://127.0.0.1:{port}"),
                *("--warehouse", str(tmp_path / "spark-warehouse"), "--output-dir", str(tmp_path / "spark-out")),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert on_spark.returncode == 0, on_spark.stderr[-3000:]
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(pid)

    # DuckDB's tables from the same files, built in this process (no second CLI run)
    conn = build_duckdb(PipelineSettings(raw_dir=str(worked_example_dir)))
    on_duckdb = {name: conn.sql(f"from marts.{name}").pl() for name in PUBLISHED}
    published = sorted(path.name for path in (tmp_path / "spark-out").glob("*.parquet"))
    assert published == sorted(f"{name}.parquet" for name in PUBLISHED)
    failures = {
        name: problems
        for name in PUBLISHED
        if (problems := differences(pl.read_parquet(tmp_path / "spark-out" / f"{name}.parquet"), on_duckdb[name]))
    }
    assert failures == {}
    assert on_duckdb["cohort_retention"].height > 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# Online Retail's slice with a record the CSV reader cannot read (too many fields)
RETAIL_WITH_UNREADABLE = RETAIL + "536383,22115,BOTTLE,1,2011-08-01 10:00:00,5.00,13047.0,United Kingdom,extra\n"


@pytest.mark.parametrize(
    "source, files",
    [
        ("online_retail", {"online_retail.csv": RETAIL_WITH_UNREADABLE}),
        ("foodie_fi", {"subscriptions.csv": FOODIE_SUBS, "plans.csv": FOODIE_PLANS}),
    ],
)
def test_source_adapters(spark, tmp_path: Path, source: str, files: dict[str, str]) -> None:
    """An adapter's select over its own files runs on Spark from the same SQL, with its options bound."""
    raw = write_raw(tmp_path, files)
    conn = build_both(spark, raw, tmp_path, source=source)
    assert conn.sql("select count(*) from staging.int_customers").fetchall()[0][0] > 0
    assert_same_tables(spark, conn)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["foodie_fi", "online_retail"])
def test_public_data_sets(spark, tmp_path: Path, source: str) -> None:
    raw_dir = EXTERNAL / source
    if not raw_dir.exists():
        pytest.skip(f"public data set {raw_dir} is not here (set CHURN_PUBLIC_DATA to the folder that holds {source}/)")
    assert_same_tables(spark, build_both(spark, raw_dir, tmp_path, source=source))


def test_an_adapter_row_key_repeated_on_spark_is_the_same_one_line(spark, tmp_path: Path) -> None:
    adapter, raw, events = doubling_adapter(tmp_path)
    with pytest.raises(AdapterError, match=REPEATED_ROW_KEY):
        register_through_adapter(spark, adapter, events, raw, adapter.options({}))
