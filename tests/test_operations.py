"""Operations, as real processes and files: readers never blocked, crashes recoverable,
failed checks publish nothing, reruns identical, hostile names refused."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from churn_pipeline.defs.resources import Warehouse
from churn_pipeline.lib.adapters import AdapterError, load_adapter
from churn_pipeline.lib.build_area import build_path, start_build
from churn_pipeline.lib.generate import GeneratorConfig, generate
from churn_pipeline.lib.identifiers import IdentifierError, qualified, validate_identifier
from churn_pipeline.lib.output_files import OutputPathError, output_path

CLI = [sys.executable, "-m", "churn_pipeline.cli"]
TABLES = ["cohort_retention", "retention_curve", "high_risk_months", "churn_by_month", "churn_by_channel"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("raw")
    generate(directory, GeneratorConfig(customers=600, months=14, seed=5, messy_share=0.01))
    return directory


def _args(raw: Path, workdir: Path, *extra: str) -> list[str]:
    return [
        *CLI,
        "run",
        "--raw-dir",
        str(raw),
        "--warehouse",
        str(workdir / "w.duckdb"),
        "--output-dir",
        str(workdir / "marts"),
        *extra,
    ]


def _run(raw: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_args(raw, workdir, *extra), capture_output=True, text=True, timeout=300)


def _outputs(workdir: Path) -> dict[str, pl.DataFrame]:
    return {table: pl.read_parquet(workdir / "marts" / f"{table}.parquet") for table in TABLES}


@pytest.fixture(scope="module")
def clean(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("clean")
    result = _run(raw, workdir)
    assert result.returncode == 0, result.stderr
    return workdir


@pytest.fixture(scope="module")
def earlier(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse and outputs published by a run observing the history up to 2023-10-15."""
    workdir = tmp_path_factory.mktemp("earlier")
    result = _run(raw, workdir, "--as-of", "2023-10-15T00:00:00Z")
    assert result.returncode == 0, result.stderr
    return workdir


def _start_from(earlier: Path, workdir: Path) -> None:
    shutil.copytree(earlier, workdir, dirs_exist_ok=True)


READER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from churn_pipeline.lib.analyst import connect_readonly
    warehouse, stop = sys.argv[1], Path(sys.argv[2])
    conn = connect_readonly(warehouse)
    before = conn.sql("select last_complete_month::varchar from staging.int_observation_window").fetchall()[0][0]
    queries, errors = 0, []
    print("ready", flush=True)
    while not stop.exists():
        try:
            conn.sql("select count(*), sum(active_customers) from marts.cohort_retention").fetchall()
            queries += 1
        except Exception as exc:
            errors.append(str(exc))
        time.sleep(0.02)
    conn.close()
    after = connect_readonly(warehouse).sql("select last_complete_month::varchar from staging.int_observation_window").fetchall()[0][0]
    print(json.dumps({"queries": queries, "errors": errors, "before": before, "after": after}))
    """
)


@pytest.mark.slow
def test_a_reader_holding_the_warehouse_never_blocks_a_run(raw: Path, earlier: Path, tmp_path: Path) -> None:
    _start_from(earlier, tmp_path)
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path / "w.duckdb"), str(stop)], stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout.readline().strip() == "ready"
    result = _run(raw, tmp_path)  # the whole history this time
    stop.touch()
    report = json.loads(reader.stdout.readline())
    reader.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    assert report["errors"] == [] and report["queries"] > 20
    assert report["before"] == "2023-09-01" and report["after"] == "2024-01-01"  # reconnecting shows the new run


@pytest.mark.slow
@pytest.mark.parametrize("marker", ["raw/subscription_events", "staging/int_customers", "marts/churn_by_quarter"])
def test_kill_9_at_any_point_then_rerun_equals_a_clean_run(
    raw: Path, clean: Path, earlier: Path, tmp_path: Path, marker: str
) -> None:
    _start_from(earlier, tmp_path)
    before = _outputs(tmp_path)
    process = subprocess.Popen(_args(raw, tmp_path), stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if marker in line:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    # the previous good outputs are whole: every published file still reads, with the first run's rows
    for table, frame in _outputs(tmp_path).items():
        assert frame.equals(before[table]) or marker == "marts/churn_by_quarter", table
    rerun = _run(raw, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    for table, frame in _outputs(tmp_path).items():
        assert frame.equals(_outputs(clean)[table]), table
    assert not build_path(tmp_path / "w.duckdb").exists()
    assert not (tmp_path / "marts" / ".build").exists()
    assert not list((tmp_path / "marts").glob(".*tmp"))


@pytest.mark.slow
def test_rerun_gives_byte_identical_parquet(raw: Path, clean: Path, tmp_path: Path) -> None:
    assert _run(raw, tmp_path).returncode == 0
    for path in sorted((clean / "marts").glob("*.parquet")):
        assert path.read_bytes() == (tmp_path / "marts" / path.name).read_bytes(), path.name


def test_a_failing_blocking_check_publishes_nothing(raw: Path, clean: Path, tmp_path: Path) -> None:
    from churn_pipeline.definitions import defs

    workdir = tmp_path / "work"
    (workdir / "marts").mkdir(parents=True)
    for path in (clean / "marts").glob("*.parquet"):
        (workdir / "marts" / path.name).write_bytes(path.read_bytes())
    (workdir / "w.duckdb").write_bytes((clean / "w.duckdb").read_bytes())
    before = {p.name: p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}

    @dg.asset_check(asset=dg.AssetKey(["marts", "churn_by_month"]), blocking=True)
    def churn_is_implausible() -> dg.AssetCheckResult:
        """Stands in for any blocking check that fails."""
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, description="saw 3 bad months")

    failing = dg.Definitions.merge(defs(), dg.Definitions(asset_checks=[churn_is_implausible]))
    run_config = {
        "resources": {
            "pipeline": {"config": {"raw_dir": str(raw), "output_dir": str(workdir / "marts"), "as_of": "2023-10-15T00:00:00Z"}},
            "warehouse": {"config": {"database": str(workdir / "w.duckdb")}},
        }
    }
    with dg.DagsterInstance.ephemeral() as instance:
        result = failing.resolve_job_def("churn_pipeline_job").execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )
    evaluations = {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert evaluations["churn_is_implausible"].passed is False
    from churn_pipeline.cli import _failure_line

    assert _failure_line(result) == "check churn_is_implausible on marts/churn_by_month failed: saw 3 bad months"
    assert evaluations["customer_identity_holds"].passed is True  # the real checks ran and passed
    materialized = {e.asset_key for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert dg.AssetKey(["marts", "churn_by_month"]) in materialized
    assert dg.AssetKey(["published"]) not in materialized
    after = {
        p.name: p.read_bytes()
        for p in sorted(workdir.rglob("*"))
        if p.is_file() and ".build" not in p.parts and not p.name.startswith((".w.duckdb.build", ".w.duckdb.lock"))
    }  # the run's own scratch and lock
    assert after == before


def test_a_failing_check_says_how_many_rows_failed_and_shows_the_first() -> None:
    from churn_pipeline.defs.checks import _result

    failing = _result(
        [("orders", "2024-01-01", 2, 1), ("orders", "2024-02-01", 3, 0)],
        ["basis", "month", "start", "end"],
        "months break the customer identity",
    )
    assert not failing.passed
    assert failing.description == "2 months break the customer identity; first: basis=orders, month=2024-01-01, start=2, end=1"
    assert _result([], ["basis"], "anything").passed


@pytest.mark.parametrize("name", ["orders; drop table x", "../etc", "marts.x", "", "a" * 64, "naïve"])
def test_hostile_identifiers_are_refused(name: str) -> None:
    with pytest.raises(IdentifierError):
        validate_identifier(name)
    with pytest.raises(IdentifierError):
        qualified("marts", name)


@pytest.mark.parametrize("table", ["../escape", "sub/dir", "..", "x.parquet/../../y"])
def test_output_paths_stay_inside_the_output_directory(tmp_path: Path, table: str) -> None:
    with pytest.raises((OutputPathError, IdentifierError)):
        output_path(tmp_path, table)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", ["../../tmp/evil", "online_retail; rm -rf /", "/etc"])
def test_hostile_source_names_are_refused_before_anything_runs(source: str, tmp_path: Path) -> None:
    with pytest.raises(AdapterError):
        load_adapter(source)
    result = subprocess.run(
        [*CLI, "run", "--source", source, "--raw-dir", str(tmp_path), "--warehouse", str(tmp_path / "w.duckdb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w.duckdb").exists()


def test_the_analyst_connection_cannot_write_read_files_or_change_settings(clean: Path, tmp_path: Path) -> None:
    import duckdb

    from churn_pipeline.lib.analyst import connect_readonly

    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    conn = connect_readonly(clean / "w.duckdb")
    assert conn.sql("select count(*) from marts.churn_by_month").fetchall()[0][0] > 0
    refused = {
        "write": "create table marts.x as select 1",
        "delete": "delete from marts.churn_by_month",
        "read a file": f"select * from read_csv('{secret}')",
        "write a file": f"copy (select 1) to '{tmp_path / 'out.csv'}'",
        "attach": f"attach '{tmp_path / 'other.duckdb'}' as other",
        "turn access back on": "set enable_external_access = true",
        "unlock": "set lock_configuration = false",
    }
    for what, query in refused.items():
        with pytest.raises(duckdb.Error):
            conn.execute(query)
            pytest.fail(f"{what} was allowed")
    conn.close()
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "other.duckdb").exists()


def test_churn_pipeline_sql_prints_csv_and_refuses_writes(clean: Path) -> None:
    ok = subprocess.run(
        [
            *CLI,
            "sql",
            "select basis, count(*) as months from marts.churn_by_month group by 1 order by 1",
            "--warehouse",
            str(clean / "w.duckdb"),
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0] == "basis,months" and [line.split(",")[0] for line in lines[1:]] == ["orders", "subscription"]
    refused = subprocess.run(
        [*CLI, "sql", "drop table marts.churn_by_month", "--warehouse", str(clean / "w.duckdb")], capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("churn-pipeline: query failed:") and len(refused.stderr.strip().splitlines()) == 1
    for query, count in [("select 1; select 2", 2), ("", 0), ("create table t (a int); select 1", 2)]:
        several = subprocess.run([*CLI, "sql", query, "--warehouse", str(clean / "w.duckdb")], capture_output=True, text=True)
        assert several.returncode == 2 and several.stdout == ""
        assert several.stderr == f"churn-pipeline: error: sql runs exactly one statement; this has {count}\n"
    missing = subprocess.run([*CLI, "sql", "select 1", "--warehouse", str(clean / "nope.duckdb")], capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def _query(clean: Path, query: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "sql", query, "--warehouse", str(clean / "w.duckdb"), *flags], capture_output=True, text=True)


def test_sql_tables_keep_whole_column_names_and_say_what_they_cut(clean: Path) -> None:

    with duckdb.connect(str(clean / "w.duckdb"), read_only=True) as conn:
        columns = [row[0] for row in conn.sql("describe marts.churn_by_month").fetchall()]
        months = conn.sql("select count(*) from marts.churn_by_month").fetchall()[0][0]
    wide = _query(clean, "select * from marts.churn_by_month order by basis, month", "--max-rows", "6")
    assert wide.returncode == 0, wide.stderr
    header = next(line for line in wide.stdout.splitlines() if "customers_start" in line)
    assert [cell.strip() for cell in header.strip("│").split("│")] == columns  # every name whole, none left out
    assert f"{months} rows (6 shown)" in wide.stdout
    short = _query(clean, "select basis, count(*) as months from marts.churn_by_month group by 1 order by 1")
    assert "shown" not in short.stdout and "subscription" in short.stdout


def test_sql_json_and_markdown_hold_every_row(clean: Path) -> None:
    query = "select basis, month, churned, customer_churn_rate from marts.churn_by_month order by basis, month"
    csv = pl.read_csv(io.StringIO(_query(clean, query, "--format", "csv").stdout), try_parse_dates=True)
    records = json.loads(_query(clean, query, "--format", "json").stdout)
    assert len(records) == csv.height > 20
    assert [r["churned"] for r in records] == csv["churned"].to_list()
    assert [r["month"] for r in records] == [str(m) for m in csv["month"].to_list()]
    markdown = _query(clean, query, "--format", "markdown").stdout.splitlines()
    assert markdown[0] == "| basis | month | churned | customer_churn_rate |" and markdown[1] == "|---|---|---|---|"
    assert len(markdown) == 2 + csv.height
    first = [cell.strip() for cell in markdown[2].strip("|").split("|")]
    assert first[:3] == [csv["basis"][0], str(csv["month"][0]), str(csv["churned"][0])]


def test_two_analyst_connections_in_one_process(clean: Path) -> None:
    from churn_pipeline.lib.analyst import connect_readonly

    first = connect_readonly(clean / "w.duckdb")
    second = connect_readonly(clean / "w.duckdb")
    query = "select count(*) from marts.churn_by_month"
    assert first.sql(query).fetchall() == second.sql(query).fetchall()
    with pytest.raises(duckdb.Error):
        second.execute("set lock_configuration = false")
    with pytest.raises(duckdb.Error):
        second.execute("create table marts.t (a int)")
    first.close()
    second.close()


@pytest.mark.parametrize("memory_limit", ["1GB", None])
def test_steps_share_one_database_with_the_configured_settings(tmp_path: Path, memory_limit: str | None) -> None:
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"), memory_limit=memory_limit, threads=1)
    limit = "select current_setting('memory_limit'), current_setting('threads'), current_setting('TimeZone')"
    expected_limit = (
        duckdb.connect()
        .execute(f"set memory_limit = '{memory_limit}'" if memory_limit else "select 1")
        .execute(limit)
        .fetchone()[0]
    )
    with warehouse.get_connection() as conn:
        conn.execute("create table t as select range as i from range(1000)")
    try:
        with warehouse.get_connection() as conn:
            assert conn.execute(limit).fetchone() == (expected_limit, 1, "UTC")
            assert conn.execute("select count(*) from t").fetchone()[0] == 1000
    finally:
        warehouse.close_build()
    build = build_path(warehouse.live_path)
    assert build.exists() and not build.with_name(build.name + ".wal").exists()


def _warehouse_file(path: Path, rows: int) -> None:
    conn = duckdb.connect(str(path))
    conn.execute(f"create or replace table t as select * from range({rows}) as r(i)")
    conn.close()


def test_a_build_starts_from_a_copy_of_the_live_warehouse(tmp_path: Path) -> None:
    live = tmp_path / "w.duckdb"
    conn = duckdb.connect(str(live))
    conn.execute("create table t as select * from range(1000) as r(i)")
    conn.close()
    build_path(live).write_bytes(b"a crashed run's leftover")

    assert start_build(live) == "copied"
    assert build_path(live).read_bytes() == live.read_bytes()
    assert start_build(tmp_path / "none.duckdb") == "new"


WRITER = textwrap.dedent(
    """
    import sys, time
    import duckdb
    conn = duckdb.connect(sys.argv[1])
    conn.execute("create table main.analyst_note as select 'kept' as note")
    print("written", flush=True)
    time.sleep(600)
    """
)


def _sql(warehouse: Path, query: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "sql", query, "--warehouse", str(warehouse), "--format", "csv"], capture_output=True, text=True)


@pytest.mark.slow
def test_a_writer_killed_with_its_wal_open_leaves_a_readable_warehouse(raw: Path, clean: Path, tmp_path: Path) -> None:
    live = tmp_path / "w.duckdb"
    live.write_bytes((clean / "w.duckdb").read_bytes())
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(live)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "written"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    assert (tmp_path / "w.duckdb.wal").exists()

    result = _run(raw, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "replayed the leftover w.duckdb.wal" in result.stdout
    assert not (tmp_path / "w.duckdb.wal").exists()
    # the new warehouse opens, and what the killed writer committed was kept
    with duckdb.connect(str(live), read_only=True) as conn:
        assert conn.sql("select note from main.analyst_note").fetchall() == [("kept",)]
    assert _sql(live, "select count(*) as n from marts.churn_by_month").returncode == 0
    rerun = _run(raw, tmp_path)
    assert rerun.returncode == 0 and "wal" not in rerun.stdout.lower()


@pytest.mark.slow
def test_a_wal_that_is_not_the_warehouse_s_is_set_aside_and_named(raw: Path, clean: Path, tmp_path: Path) -> None:
    """The state an earlier version left: the new file swapped in beside the old file's WAL."""
    live = tmp_path / "w.duckdb"
    live.write_bytes((clean / "w.duckdb").read_bytes())
    other = tmp_path / "other.duckdb"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(other)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "written"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    (tmp_path / "w.duckdb.wal").write_bytes((tmp_path / "other.duckdb.wal").read_bytes())

    unreadable = _sql(live, "select 1")
    assert unreadable.returncode == 1
    assert unreadable.stderr.startswith(f"churn-pipeline: error: cannot open warehouse {live}: ")
    assert len(unreadable.stderr.strip().splitlines()) == 1

    result = _run(raw, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "set aside w.duckdb.wal" in result.stdout and "w.duckdb.wal.stale" in result.stdout
    assert (tmp_path / "w.duckdb.wal.stale").exists() and not (tmp_path / "w.duckdb.wal").exists()
    assert _sql(live, "select count(*) as n from marts.churn_by_month").returncode == 0
