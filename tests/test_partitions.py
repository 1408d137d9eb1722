"""Monthly partitions: deliveries in raw_dir/YYYY-MM/, one month at a time, backfills, reruns,
half-open month windows, the schedule, the run lock and retries."""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from churn_pipeline.cli import main
from churn_pipeline.lib.generate import GeneratorConfig, generate
from churn_pipeline.lib.months import end_of_month, month_keys
from churn_pipeline.lib.run_lock import lock_path
from churn_pipeline.lib.settings import SettingsError
from helpers import Built, write_raw

TABLES = [
    "cohort_retention",
    "retention_curve",
    "high_risk_months",
    "churn_by_cohort",
    "churn_by_channel",
    "churn_by_segment",
    "churn_by_month",
    "churn_by_quarter",
    "churn_reactivation",
    "churn_by_price_change",
]


def test_month_keys_and_the_instant_a_month_closes() -> None:
    assert month_keys("2023-11", "2024-02") == ("2023-11", "2023-12", "2024-01", "2024-02")
    assert end_of_month("2024-12", "UTC") == datetime(2025, 1, 1, tzinfo=UTC)
    # New York is UTC-4 in summer (EDT), UTC-5 in winter (EST)
    assert end_of_month("2024-05", "America/New_York") == datetime(2024, 6, 1, 4, tzinfo=UTC)
    assert end_of_month("2024-10", "America/New_York") == datetime(2024, 11, 1, 4, tzinfo=UTC)
    assert end_of_month("2024-11", "America/New_York") == datetime(2024, 12, 1, 5, tzinfo=UTC)
    with pytest.raises(SettingsError, match="backwards"):
        month_keys("2024-03", "2024-01")
    with pytest.raises(SettingsError, match="YYYY-MM"):
        month_keys("2024-13", "2024-14")


def _delivery(raw: Path, month: str) -> None:
    write_raw(raw / month, {"orders.csv": f"order_id,customer_id,ordered_at,amount\n{month},c1,{month}-10T00:00:00Z,10\n"})


def test_the_schedule_requests_the_month_that_just_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churn_pipeline.definitions import defs
    from churn_pipeline.defs.partitions import register_delivery_months

    for month in ("2024-05", "2024-06"):
        _delivery(tmp_path, month)
    monkeypatch.setenv("CHURN_RAW_DIR", str(tmp_path))
    with dg.instance_for_test() as instance:
        definitions = defs()
        schedule = definitions.resolve_schedule_def("monthly_churn_schedule")
        repository = definitions.get_repository_def()
        assert schedule.cron_schedule == "0 6 2 * *"
        assert register_delivery_months(instance, tmp_path) == ["2024-05", "2024-06"]

        def evaluate(day: datetime) -> dg.ScheduleExecutionData:
            with dg.build_schedule_context(instance=instance, repository_def=repository, scheduled_execution_time=day) as tick:
                return schedule.evaluate_tick(tick)

        assert [request.partition_key for request in evaluate(datetime(2024, 7, 2, 6, tzinfo=UTC)).run_requests] == ["2024-06"]
        # a month whose folder has not come yet is skipped, naming the folder
        skipped = evaluate(datetime(2024, 8, 2, 6, tzinfo=UTC))
        assert skipped.run_requests == []
        assert (
            skipped.skip_message
            == f"month 2024-07: no delivery yet ({tmp_path / '2024-07'}/ has no orders* or subscription_events* files)"
        )
        # the year turns: on 2 January the month that closed is December
        _delivery(tmp_path, "2024-12")
        register_delivery_months(instance, tmp_path)
        assert [request.partition_key for request in evaluate(datetime(2025, 1, 2, 6, tzinfo=UTC)).run_requests] == ["2024-12"]


def test_a_flat_raw_directory_has_no_partitions_and_the_schedule_reloads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churn_pipeline.definitions import defs

    write_raw(tmp_path, {"orders.csv": "order_id,customer_id,ordered_at,amount\no1,c1,2024-06-10T00:00:00Z,10\n"})
    monkeypatch.setenv("CHURN_RAW_DIR", str(tmp_path))
    with dg.instance_for_test() as instance:
        definitions = defs()
        graph = definitions.resolve_asset_graph()
        assert all(graph.get(key).partitions_def is None for key in graph.get_all_asset_keys())
        schedule = definitions.resolve_schedule_def("monthly_churn_schedule")
        tick = dg.build_schedule_context(
            instance=instance,
            repository_def=definitions.get_repository_def(),
            scheduled_execution_time=datetime(2024, 7, 2, 6, tzinfo=UTC),
        )
        requests = schedule.evaluate_tick(tick).run_requests
    assert [(request.partition_key, request.run_key) for request in requests] == [(None, "2024-06")]


def test_a_delivery_month_is_a_half_open_window_in_the_reporting_zone(tmp_path: Path) -> None:
    write_raw(
        tmp_path / "2024-05",
        {
            "orders.csv": """
            order_id,customer_id,ordered_at,amount
            first_instant,c1,2024-05-01T00:00:00-04:00,10
            last_second,c1,2024-05-31T23:59:59-04:00,10
            june_in_new_york,c2,2024-06-01T00:00:00-04:00,10
            april_in_new_york,c3,2024-05-01T03:59:59Z,10
            may_in_new_york_june_in_utc,c4,2024-06-01T03:59:59Z,10
        """,
        },
    )
    built = Built(tmp_path, timezone="America/New_York")
    loaded = set(built.sql("select order_id from staging.int_orders")["order_id"])
    assert loaded == {"first_instant", "last_second", "may_in_new_york_june_in_utc"}
    quarantined = dict(
        built.sql("select json_extract_string(raw_values, '$.order_id') as id, reason from marts.quarantine").iter_rows()
    )
    assert quarantined == {
        "june_in_new_york": "ordered_at outside its delivery month",
        "april_in_new_york": "ordered_at outside its delivery month",
    }
    assert set(built.sql("select distinct source_file from raw.orders")["source_file"]) == {"2024-05/orders.csv"}


@pytest.fixture(scope="module")
def monthly_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("monthly")
    generate(directory, GeneratorConfig(customers=700, months=5, seed=11, messy_share=0.01, layout="monthly"))
    return directory


def _run(raw: Path, workdir: Path, *extra: str) -> int:
    return main(
        ["run", "--raw-dir", str(raw), "--warehouse", str(workdir / "w.duckdb"), "--output-dir", str(workdir / "marts"), *extra]
    )


def _tables(workdir: Path) -> dict[str, pl.DataFrame]:
    return {table: pl.read_parquet(workdir / "marts" / f"{table}.parquet") for table in TABLES}


def _raw_rows(workdir: Path) -> pl.DataFrame:
    with duckdb.connect(str(workdir / "w.duckdb"), read_only=True) as conn:
        return conn.sql("select * from raw.orders order by source_file, source_row").pl()


def test_the_generator_writes_one_delivery_folder_per_month(monthly_raw: Path) -> None:
    folders = sorted(p.name for p in monthly_raw.iterdir() if p.is_dir())
    assert folders == ["2023-01", "2023-02", "2023-03", "2023-04", "2023-05"]
    assert (monthly_raw / "subscription_events_history.csv").exists()  # trials started before the first month
    for folder in folders:
        orders = pl.read_csv(monthly_raw / folder / "orders.csv", infer_schema=False)
        parsed = orders["ordered_at"].str.to_datetime(time_zone="UTC", strict=False).drop_nulls()
        assert set(parsed.dt.strftime("%Y-%m")) == {folder}


def test_rerunning_a_month_replaces_exactly_its_rows(monthly_raw: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(monthly_raw, raw)
    work = tmp_path / "work"
    assert _run(raw, work, "--months", "2023-01..2023-03") == 0
    before = _raw_rows(work)

    # February's delivery is corrected: its last 10 orders withdrawn
    february = pl.read_csv(raw / "2023-02" / "orders.csv", infer_schema=False)
    corrected = february.head(february.height - 10)
    corrected.write_csv(raw / "2023-02" / "orders.csv")
    assert _run(raw, work, "--month", "2023-02") == 0
    after = _raw_rows(work)

    def rows_of(frame: pl.DataFrame, month: str) -> pl.DataFrame:
        return frame.filter(pl.col("delivery_month") == month)

    assert rows_of(after, "2023-01").equals(rows_of(before, "2023-01"))
    assert rows_of(after, "2023-03").equals(rows_of(before, "2023-03"))
    assert rows_of(after, "2023-02").height == corrected.height == rows_of(before, "2023-02").height - 10
    assert after["order_id"].is_duplicated().sum() == before["order_id"].is_duplicated().sum()  # only planted duplicates

    # the published tables are as of February's close and equal a clean run on the corrected files
    assert _run(raw, tmp_path / "clean", "--months", "2023-01..2023-02") == 0
    rerun, clean = _tables(work), _tables(tmp_path / "clean")
    for table in TABLES:
        assert rerun[table].equals(clean[table]), table

    # and the same month again, its files unchanged, redoes no model and changes no published byte
    published = {p.name: p.read_bytes() for p in (work / "marts").glob("*.parquet")}
    versions = _output_versions(work)
    assert _run(raw, work, "--month", "2023-02") == 0
    assert _output_versions(work) == versions
    assert {p.name: p.read_bytes() for p in (work / "marts").glob("*.parquet")} == published


def _output_versions(workdir: Path) -> dict[tuple[str, str], str]:
    with duckdb.connect(str(workdir / "w.duckdb"), read_only=True) as conn:
        found = conn.sql("select model, delivery_month, output_version from staging.incremental_builds").fetchall()
    return {(model, month): version for model, month, version in found}


def test_month_by_month_appends_equals_a_backfill_and_a_full_run_and_full_refresh_rebuilds(
    monthly_raw: Path, tmp_path: Path
) -> None:
    monthly = tmp_path / "monthly"
    for month in ["2023-01", "2023-02"]:
        assert _run(monthly_raw, monthly, "--month", month) == 0
    first = _output_versions(monthly)
    assert {month for _, month in first} == {"", "2023-01", "2023-02"}  # top-level history and two folders

    assert _run(monthly_raw, monthly, "--month", "2023-03") == 0
    second = _output_versions(monthly)
    staged = {key for key in second if key[0].startswith("staging.stg_") and second[key] != first.get(key)}
    # the events' staging reads the top-level history again with every month (docs/operations.md)
    assert staged == {
        ("staging.stg_orders", "2023-03"),
        ("staging.stg_subscription_events", "2023-03"),
        ("staging.stg_subscription_events", ""),
    }
    # the monthly runs read only their own folders (and the top-level history)
    files = set(_raw_rows(monthly)["source_file"])
    assert files == {"2023-01/orders.csv", "2023-02/orders.csv", "2023-03/orders.csv"}

    # month by month equals one backfill and a full run over every file observed up to March's close
    assert _run(monthly_raw, tmp_path / "backfill", "--months", "2023-01..2023-03") == 0
    assert _run(monthly_raw, tmp_path / "full", "--as-of", "2023-04-01T00:00:00Z") == 0
    appended, backfill, full = (_tables(tmp_path / name) for name in ("monthly", "backfill", "full"))
    assert appended["churn_by_month"]["month"].max().isoformat() == "2023-03-01"
    assert appended["cohort_retention"].height > 0
    for table in TABLES:
        assert appended[table].equals(backfill[table]), table
        assert appended[table].equals(full[table]), table

    assert _run(monthly_raw, monthly, "--month", "2023-03", "--full-refresh") == 0
    third = _output_versions(monthly)
    assert third.keys() == second.keys() and all(third[key] != second[key] for key in third)
    rebuilt = _tables(monthly)
    assert all(rebuilt[table].equals(appended[table]) for table in TABLES)


def test_month_mistakes_get_one_line(monthly_raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(monthly_raw, raw)
    shutil.rmtree(raw / "2023-04")
    assert _run(raw, tmp_path / "w", "--month", "2023-04") == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(f"month 2023-04: {raw / '2023-04'} has no orders* or subscription_events* files (.csv, .csv.gz or .parquet)")
    )
    assert _run(raw, tmp_path / "w", "--month", "2022-06") == 2
    assert f"month 2022-06: {raw / '2022-06'} has no orders* or subscription_events* files" in capsys.readouterr().err
    assert _run(raw, tmp_path / "w", "--months", "2023-01-2023-03") == 2
    assert "--months: '2023-01-2023-03' is not FIRST..LAST" in capsys.readouterr().err
    assert not (tmp_path / "w" / "w.duckdb").exists()


@pytest.mark.slow
def test_a_second_run_waits_for_the_first_and_a_stuck_one_times_out(monthly_raw: Path, tmp_path: Path) -> None:
    from helpers import run_job

    live = tmp_path / "warehouse.duckdb"
    fd = os.open(lock_path(live), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # stands in for another run in progress
    try:
        stuck = run_job(monthly_raw, tmp_path, warehouse={"lock_timeout_seconds": 1})
        assert not stuck.success
        assert not live.exists()

        started = time.monotonic()
        threading.Timer(2.0, lambda: fcntl.flock(fd, fcntl.LOCK_UN)).start()
        waited = run_job(monthly_raw, tmp_path)
        assert waited.success
        assert time.monotonic() - started >= 2.0
        assert live.exists()
    finally:
        os.close(fd)


@pytest.mark.slow
def test_a_file_still_being_written_is_retried(monthly_raw: Path, tmp_path: Path) -> None:
    from helpers import run_job

    raw = tmp_path / "raw"
    shutil.copytree(monthly_raw, raw)
    target = raw / "2023-03" / "orders.csv"
    complete = target.read_text(encoding="utf-8")
    header, *lines = complete.splitlines(keepends=True)
    target.write_text(header + "".join(lines[: len(lines) // 2]), encoding="utf-8")
    stop = threading.Event()

    def keep_appending() -> None:  # a slow writer: the rest of the file, a line every few milliseconds
        with target.open("a", encoding="utf-8") as handle:
            for line in lines[len(lines) // 2 :]:
                handle.write(line)
                handle.flush()
                time.sleep(0.004)
            while not stop.wait(0.004):
                os.utime(target)  # still "being written" until told to stop

    writer = threading.Thread(target=keep_appending)
    writer.start()
    threading.Timer(4.0, stop.set).start()
    try:
        result = run_job(raw, tmp_path / "work")
    finally:
        stop.set()
        writer.join()
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert result.success
    assert retries and all(e.step_key.startswith("raw__orders") for e in retries)
    with duckdb.connect(str(tmp_path / "work" / "warehouse.duckdb"), read_only=True) as conn:
        loaded = conn.sql("select * from raw.orders").pl()
    assert loaded.filter(pl.col("source_file") == "2023-03/orders.csv").height == len(lines)


def test_the_delivery_sensor_adds_each_new_month_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churn_pipeline.definitions import defs
    from churn_pipeline.defs.partitions import register_delivery_months

    _delivery(tmp_path, "2024-05")
    monkeypatch.setenv("CHURN_RAW_DIR", str(tmp_path))
    with dg.instance_for_test() as instance:
        sensor = defs().resolve_sensor_def("delivery_months")
        _delivery(tmp_path, "2024-06")
        with dg.build_sensor_context(instance=instance) as context:
            (request,) = sensor.evaluate_tick(context).dynamic_partitions_requests
        assert (request.partitions_def_name, list(request.partition_keys)) == ("delivery_month", ["2024-05", "2024-06"])
        register_delivery_months(instance, tmp_path)
        with dg.build_sensor_context(instance=instance) as context:
            assert sensor.evaluate_tick(context).skip_message == "no new delivery month"
