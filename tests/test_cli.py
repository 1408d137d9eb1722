"""The `churn-pipeline` command, as a user runs it: a real process, exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from helpers import write_raw

CLI = [sys.executable, "-m", "churn_pipeline.cli"]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_generate_then_run_end_to_end(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generated = _run(
        "generate", "--out", str(raw), "--customers", "400", "--months", "12", "--messy-share", "0.02", "--format", "mixed"
    )
    assert generated.returncode == 0, generated.stderr
    result = _run(
        "run",
        "--raw-dir",
        str(raw),
        "--warehouse",
        str(tmp_path / "w.duckdb"),
        "--output-dir",
        str(tmp_path / "marts"),
        "--timezone",
        "Europe/Berlin",
    )
    assert result.returncode == 0, result.stderr
    assert "marts/cohort_retention" in result.stdout and "rows" in result.stdout
    assert "checks passed" in result.stdout
    for table in ("cohort_retention", "retention_curve", "high_risk_months"):
        assert pl.read_parquet(tmp_path / "marts" / f"{table}.parquet").height > 0
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        schemas = {row[0] for row in conn.sql("select schema_name from information_schema.schemata").fetchall()}
        assert {"raw", "staging", "marts"} <= schemas
        assert conn.sql("select count(*) from marts.quarantine").fetchall()[0][0] > 0
        conn.execute("set TimeZone = 'UTC'")  # as_of, a TIMESTAMPTZ, arrives in the session's zone
        in_warehouse = conn.sql("select * from marts.quarantine").pl()
    # dashboards read the quarantine from Parquet too, with the same as_of as every published file
    published = pl.read_parquet(tmp_path / "marts" / "quarantine.parquet")
    key = ["source", "source_file", "source_row", "reason"]
    assert published.sort(key).equals(in_warehouse.sort(key))
    metadata = {
        name: pq.read_schema(tmp_path / "marts" / f"{name}.parquet").metadata for name in ("quarantine", "cohort_retention")
    }
    assert metadata["quarantine"][b"churn_pipeline.as_of"] == metadata["cohort_retention"][b"churn_pipeline.as_of"] != b""


_HEADER = {"orders.csv": "order_id,customer_id,ordered_at,amount\n"}


@pytest.mark.parametrize(
    "files, args, message",
    [
        ({"orders.csv": "order_id,customer_id,amount\no1,c1,1\n"}, [], "orders.csv: required column 'ordered_at' is missing"),
        (
            {"orders.csv": "order_id,customer_id,ordered_at,amount\n"},
            ["--timezone", "Mars/Base"],
            "--timezone: unknown time zone 'Mars/Base'",
        ),
        ({"orders.csv": "order_id,customer_id,ordered_at,amount\n"}, ["--as-of", "soon"], "--as-of: cannot read 'soon'"),
        (_HEADER, ["--memory-limit", "lots"], "--memory-limit: cannot read 'lots' as a size"),
        (_HEADER, ["--threads", "0"], "--threads: 0 is outside 1..1024"),
        (_HEADER, ["--threads", "two"], "argument --threads: invalid int value: 'two'"),
        (_HEADER, ["--price-change-window", "0"], "--price-change-window: 0 is outside 1..36"),
        (_HEADER, ["--inactivity-days", "0"], "--inactivity-days: 0 is outside 1..3660"),
        (_HEADER, ["--reporting-currency", "euro"], "--reporting-currency: 'euro' is not an ISO-4217 code"),
        (_HEADER, ["--month", "2024-13"], "--month"),
        (_HEADER, ["--source-option", "novalue"], "--source-option: 'novalue' is not KEY=VALUE"),
        (_HEADER, ["--engine", "postgres"], "--engine: 'postgres' is not one of duckdb, spark"),
        (_HEADER, ["--spark-remote", "sc://localhost:15002"], "--spark-remote: only with --engine spark"),
        (_HEADER, ["--engine", "spark", "--spark-remote", "localhost"], "--spark-remote: 'localhost' is not a Spark Connect"),
        (_HEADER, ["--engine", "spark", "--spark-driver-memory", "lots"], "--spark-driver-memory: 'lots' is not a JVM size"),
    ],
)
def test_user_mistakes_get_one_clear_line(tmp_path: Path, files: dict, args: list[str], message: str) -> None:
    raw = write_raw(tmp_path / "raw", files)
    result = _run(
        "run", "--raw-dir", str(raw), "--warehouse", str(tmp_path / "w.duckdb"), "--output-dir", str(tmp_path / "marts"), *args
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "w.duckdb").exists() and not (tmp_path / "marts").exists()  # nothing published


def test_missing_raw_directory(tmp_path: Path) -> None:
    result = _run("run", "--raw-dir", str(tmp_path / "missing"), "--warehouse", str(tmp_path / "w.duckdb"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"churn-pipeline: error: raw directory {tmp_path / 'missing'} does not exist"


def test_defaults_point_at_the_embedded_sample(tmp_path: Path) -> None:
    from churn_pipeline.cli import build_parser

    args = build_parser().parse_args(["run"])
    assert (args.raw_dir, args.database, args.output_dir) == ("data/raw", "data/warehouse.duckdb", "data/marts")
    sample = Path(__file__).parents[1] / "data" / "raw"
    assert any(sample.glob("subscription_events*")) and any(sample.glob("orders*"))


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_padded_column_names_and_extra_columns_are_read_alike_in_csv_and_parquet(tmp_path: Path, file_format: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    frame = pl.DataFrame(
        {
            "order_id ": ["o1", "o2"],
            " Customer_ID": ["c1", "c2"],
            "ordered_at": ["2024-01-05T10:00:00Z", "2024-02-05T10:00:00Z"],
            "amount": ["10", "20"],
            'note"; drop table x; --': ["a", "b"],
            "internal id": ["1", "2"],
        }
    )
    if file_format == "csv":
        frame.write_csv(raw / "orders.csv")
    else:
        frame.write_parquet(raw / "orders.parquet")
    result = _run(
        "run", "--raw-dir", str(raw), "--warehouse", str(tmp_path / "w.duckdb"), "--output-dir", str(tmp_path / "marts")
    )
    assert result.returncode == 0, result.stderr
    ignored = [line.strip() for line in result.stdout.splitlines() if "extra columns ignored" in line]
    assert ignored == [f'raw/orders: orders.{file_format}: extra columns ignored: note"; drop table x; --, internal id']
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        assert conn.sql("select order_id, customer_id, amount from staging.int_orders order by 1").fetchall() == [
            ("o1", "c1", 10.0),
            ("o2", "c2", 20.0),
        ]


@pytest.mark.slow
def test_progress_lines_name_what_they_count_and_no_complete_month_publishes_empty_tables(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", {"orders.csv": "order_id,customer_id,ordered_at,amount\no1,c1,2024-01-05T10:00:00Z,10\n"})
    result = _run(
        "run", "--raw-dir", str(raw), "--warehouse", str(tmp_path / "w.duckdb"), "--output-dir", str(tmp_path / "marts")
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split()[1:3] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert lines["raw/orders"] == ["1", "files"]
    assert lines["churn_report"][1] == "bytes" and lines["published"][1] == "files"
    published = [path.name for path in (tmp_path / "marts").iterdir()]
    assert int(lines["published"][0]) == len(published) + 1  # and the warehouse
    # as_of is the only order's time, so no month is complete: every table is published empty
    monthly = pl.read_parquet(tmp_path / "marts" / "churn_by_month.parquet")
    assert monthly.height == 0 and {"trend_3m", "trend_6m_p_value", "mrr_end"} <= set(monthly.columns)


@pytest.mark.parametrize("link", ["orders.csv", "2024-05/orders.csv", "2024-06"])
def test_a_link_out_of_the_raw_directory_is_refused_without_reading_it(tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    (outside / "2024-06").mkdir(parents=True)
    secret = outside / "secret.csv"
    secret.write_text("secret_user:x:0:0:secret_user:/home:/bin/bash\n")
    (outside / "2024-06" / "orders.csv").write_text("order_id,customer_id,ordered_at,amount\no1,c1,2024-06-05T00:00:00Z,1\n")
    raw = write_raw(tmp_path / "raw", {"subscription_events.csv": "event_id,customer_id,occurred_at,event_type\n"})
    (raw / link).parent.mkdir(parents=True, exist_ok=True)
    (raw / link).symlink_to(outside / "2024-06" if link == "2024-06" else secret)
    expected = "2024-06/orders.csv" if link == "2024-06" else link
    result = _run(
        "run", "--raw-dir", str(raw), "--warehouse", str(tmp_path / "w.duckdb"), "--output-dir", str(tmp_path / "marts")
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"churn-pipeline: error: {expected}: a link to a file outside the raw directory {raw}; refused"
    ]
    assert "secret_user" not in result.stdout + result.stderr
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.slow
def test_a_link_that_stays_inside_the_raw_directory_is_read(tmp_path: Path) -> None:
    archive = write_raw(
        tmp_path / "raw" / "archive",
        {"orders_2024.csv": "order_id,customer_id,ordered_at,amount\no1,c1,2024-01-05T00:00:00Z,1\n"},
    )
    (tmp_path / "raw" / "orders.csv").symlink_to(archive / "orders_2024.csv")
    raw = tmp_path / "raw"
    result = _run(
        "run", "--raw-dir", str(raw), "--warehouse", str(tmp_path / "w.duckdb"), "--output-dir", str(tmp_path / "marts")
    )
    assert result.returncode == 0, result.stderr


def test_a_full_refresh_refuses_files_that_changed_or_went_missing_since_they_were_loaded(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    header = "order_id,customer_id,ordered_at,amount\n"
    write_raw(raw / "2024-01", {"orders.csv": header + "o1,c1,2024-01-05T00:00:00Z,10\n"})
    write_raw(
        raw / "2024-02",
        {"orders.csv": header + "o2,c1,2024-02-05T00:00:00Z,20\n", "orders_late.csv": header + "o4,c3,2024-02-07T00:00:00Z,5\n"},
    )
    write_raw(raw / "2024-03", {"orders.csv": header + "o3,c2,2024-03-05T00:00:00Z,30\n"})
    paths = ["--raw-dir", str(raw), "--warehouse", str(tmp_path / "w.duckdb"), "--output-dir", str(tmp_path / "marts")]
    assert _run("run", *paths).returncode == 0
    (raw / "2024-01" / "orders.csv").write_text(header + "o1,c1,2024-01-05T00:00:00Z,11\n")
    (raw / "2024-02" / "orders_late.csv").unlink()

    refused = _run("run", *paths, "--full-refresh")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "churn-pipeline: error: --full-refresh: 2024-01/orders.csv (changed), 2024-02/orders_late.csv (missing) since loaded; "
        "nothing was rebuilt. Restore the files, or add --rebuild-from-files to rebuild from the files as they are now"
    ]
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        assert conn.sql("select sum(amount) from staging.int_orders").fetchall() == [(65.0,)]

    rebuilt = _run("run", *paths, "--full-refresh", "--rebuild-from-files")
    assert rebuilt.returncode == 0, rebuilt.stderr
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        assert conn.sql("select sum(amount) from staging.int_orders").fetchall() == [(61.0,)]
        files = conn.sql("select source_file from raw.load_manifest where source = 'orders' order by 1").fetchall()
        assert files == [("2024-01/orders.csv",), ("2024-02/orders.csv",), ("2024-03/orders.csv",)]
