"""Dagster operations on a real instance: CLI runs recorded, "Materialize all", partitions that
match the deliveries, the failure alert, overdue tables, and the warehouse pool."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster._core.test_utils import freeze_time

from churn_pipeline.cli import main, run_config
from churn_pipeline.dagster_home import dagster_home
from churn_pipeline.defs.outputs import PUBLISHED_TABLES
from churn_pipeline.defs.resources import WAREHOUSE_POOL
from churn_pipeline.lib.generate import GeneratorConfig, generate
from churn_pipeline.lib.settings import PipelineSettings, WarehouseSettings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "raw"
RAW_ASSETS = [dg.AssetKey(["raw", name]) for name in ("orders", "subscription_events", "fx_rates")]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return tmp_path / "dagster_home"


def _cli(raw: Path, work: Path, *extra: str) -> int:
    return main(
        ["run", "--raw-dir", str(raw), "--warehouse", str(work / "w.duckdb"), "--output-dir", str(work / "marts"), *extra]
    )


def _config(raw: Path, work: Path) -> dict:
    return run_config(
        PipelineSettings(raw_dir=str(raw), output_dir=str(work / "marts")), WarehouseSettings(database=str(work / "w.duckdb"))
    )


def test_the_project_home_is_created_with_its_dagster_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.chdir(tmp_path)
    home = dagster_home()
    assert home == tmp_path / ".dagster_home"
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.get_settings("concurrency")["pools"] == {"granularity": "op", "default_limit": 1}
    assert instance.run_monitoring_enabled and instance.run_monitoring_start_timeout_seconds == 180
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    assert dagster_home() == tmp_path / "elsewhere" and (tmp_path / "elsewhere" / "dagster.yaml").exists()


@pytest.mark.slow
def test_a_cli_run_is_recorded_with_every_table_and_check(home: Path, tmp_path: Path) -> None:
    assert _cli(SAMPLE, tmp_path) == 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert (run.job_name, run.status) == ("churn_pipeline_job", dg.DagsterRunStatus.SUCCESS)
        for key in PUBLISHED_TABLES:
            event = instance.get_latest_materialization_event(key)
            assert event.run_id == run.run_id
            rows = pl.read_parquet(tmp_path / "marts" / f"{key.path[-1]}.parquet").height
            assert event.asset_materialization.metadata["dagster/row_count"].value == rows
        assert instance.get_latest_materialization_event(dg.AssetKey(["published"])).run_id == run.run_id
        checks = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        # the ten data checks, all evaluated, all passed (the freshness checks are the sensor's)
        assert len(checks) == 10 and all(event.dagster_event.event_specific_data.passed for event in checks)


@pytest.mark.slow
def test_materialize_all_on_the_sample_is_one_plain_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churn_pipeline.definitions import defs

    monkeypatch.setenv("CHURN_RAW_DIR", str(SAMPLE))
    with dg.instance_for_test() as instance:
        definitions = defs()
        everything = definitions.resolve_implicit_global_asset_job_def()  # what the UI's "Materialize all" runs
        assert everything.partitions_def is None
        result = everything.execute_in_process(run_config=_config(SAMPLE, tmp_path), instance=instance, raise_on_error=False)
        assert result.success
        materialized = {event.asset_key for event in result.get_asset_materialization_events()}
        assert materialized == set(definitions.resolve_asset_graph().get_all_asset_keys())


@pytest.mark.slow
def test_after_a_full_run_and_a_backfill_no_partition_is_missing(home: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate(raw, GeneratorConfig(customers=150, months=4, seed=5, layout="monthly"))
    months = sorted(path.name for path in raw.iterdir() if path.is_dir())
    shutil.move(raw / months[-1], tmp_path / "not_yet")

    assert _cli(raw, tmp_path / "work") == 0  # a full run: every delivered month
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions("delivery_month") == months[:-1]
        for key in RAW_ASSETS:
            assert instance.get_materialized_partitions(key) == set(months[:-1]), key

    shutil.move(tmp_path / "not_yet", raw / months[-1])  # the next month is delivered
    assert _cli(raw, tmp_path / "work", "--months", f"{months[-2]}..{months[-1]}") == 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions("delivery_month") == months
        backfill = instance.get_runs(limit=1)[0]
        for key in RAW_ASSETS:
            assert instance.get_materialized_partitions(key) == set(months), key
            records = instance.fetch_materializations(key, limit=10).records
            assert {r.partition_key for r in records if r.run_id == backfill.run_id} == set(months[-2:])


def test_the_failure_sensor_reports_a_failed_run_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churn_pipeline.definitions import defs

    log = tmp_path / "alerts.log"
    monkeypatch.setenv("CHURN_ALERT_LOG", str(log))
    monkeypatch.setenv("CHURN_RAW_DIR", str(SAMPLE))
    with dg.instance_for_test() as instance:
        definitions = defs()
        sensor = definitions.resolve_sensor_def("run_failure_alert")
        repository = definitions.get_repository_def()

        def tick(cursor: str | None) -> str | None:
            return sensor.evaluate_tick(
                dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repository)
            ).cursor

        cursor = tick(None)  # a new sensor starts from now
        job = definitions.resolve_job_def("churn_pipeline_job")
        missing = tmp_path / "no_such_dir"
        result = job.execute_in_process(run_config=_config(missing, tmp_path), instance=instance, raise_on_error=False)
        assert not result.success
        cursor = tick(tick(cursor))
    (line,) = log.read_text(encoding="utf-8").splitlines()
    pattern = (
        rf"\S+ run {result.run_id} of churn_pipeline_job failed: raw__\w+: raw directory {re.escape(str(missing))} does not exist"
    )
    assert re.fullmatch(pattern, line), line


def test_a_published_table_a_month_old_is_flagged_overdue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churn_pipeline.definitions import defs

    monkeypatch.setenv("CHURN_RAW_DIR", str(SAMPLE))
    table = PUBLISHED_TABLES[0]
    with dg.instance_for_test() as instance:
        definitions = defs()
        instance.report_runless_asset_event(dg.AssetMaterialization(table))
        check_keys = [key for key in definitions.resolve_asset_graph().asset_check_keys if key.name.startswith("freshness")]
        checks = dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(*check_keys))
        job = dg.Definitions.merge(definitions, dg.Definitions(jobs=[checks])).resolve_job_def("freshness")

        def passed(after: timedelta) -> bool:
            with freeze_time(datetime.now(UTC) + after):
                result = job.execute_in_process(instance=instance, run_config=_config(SAMPLE, tmp_path), raise_on_error=False)
            (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.asset_key == table]
            return evaluation.passed

        assert passed(timedelta(days=20))
        assert not passed(timedelta(days=40))


def test_the_job_is_failed_by_run_monitoring_after_two_hours() -> None:
    from churn_pipeline.defs.schedules import churn_job

    assert churn_job.tags["dagster/max_runtime"] == str(2 * 60 * 60)


def test_every_step_that_opens_the_warehouse_is_in_its_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    from churn_pipeline.definitions import defs

    monkeypatch.setenv("CHURN_RAW_DIR", str(SAMPLE))
    with dg.instance_for_test():
        definitions = defs()
        job = definitions.resolve_job_def("churn_pipeline_job")
    pools = {node.name: node.definition.pool for node in job.graph.node_dict.values()}
    assert pools and all(pool == WAREHOUSE_POOL for pool in pools.values()), pools  # no freshness check in the job


def test_the_schema_file_matches_a_build_of_the_sample() -> None:
    from churn_pipeline.lib.schemas import load_schemas, sample_columns

    declared = {table: [(column.name, column.data_type) for column in columns] for table, columns in load_schemas().items()}
    assert declared == sample_columns(), "regenerate it: python -m churn_pipeline.lib.schemas"


def test_every_table_asset_declares_its_columns_before_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from churn_pipeline.definitions import defs

    monkeypatch.setenv("CHURN_RAW_DIR", str(SAMPLE))
    with dg.instance_for_test():
        graph = defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        if key.path[0] in ("raw", "staging", "marts"):
            schema = graph.get(key).metadata["dagster/column_schema"]
            assert len(schema.columns) >= 2 and all(column.type for column in schema.columns), key


@pytest.mark.slow
def test_under_a_multiprocess_executor_warehouse_steps_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churn_pipeline.lib.build_area import build_path
    from helpers import Built

    monkeypatch.setenv("CHURN_RAW_DIR", str(SAMPLE))
    # the executor's processes load the job from tests/helpers.py
    job = dg.build_reconstructable_job("helpers", "multiprocess_job", reconstructor_working_directory=str(Path(__file__).parent))
    pools = {"concurrency": {"pools": {"granularity": "op", "default_limit": 1}}}
    config = _config(SAMPLE, tmp_path) | {"execution": {"config": {"max_concurrent": 3}}}
    # the three raw loads could run side by side; the pool makes them take turns
    selection = [*RAW_ASSETS, dg.AssetKey(["staging", "stg_fx_rates"]), dg.AssetKey(["staging", "stg_orders"])]
    with dg.instance_for_test(overrides=pools) as instance:
        result = dg.execute_job(job, instance=instance, run_config=config, asset_selection=selection)
        assert result.success
        spans: dict[str, list[float]] = {}
        for record in instance.all_logs(result.run_id):
            event = record.dagster_event
            if event and event.event_type in (dg.DagsterEventType.STEP_WORKER_STARTING, dg.DagsterEventType.STEP_SUCCESS):
                spans.setdefault(event.step_key, []).append(record.timestamp)
    steps = sorted(spans.values())
    assert len(steps) == 5 and all(len(span) == 2 for span in steps)
    # a step's process starts only once the one before has finished
    assert all(earlier[1] <= later[0] for earlier, later in zip(steps, steps[1:], strict=False)), steps
    # each step, in a process of its own, went on with the run's one build
    expected = Built(SAMPLE).sql("select count(*) as n from staging.stg_orders")["n"].item()
    with duckdb.connect(str(build_path(tmp_path / "w.duckdb")), read_only=True) as conn:
        assert conn.sql("select count(*) from staging.stg_orders").fetchall() == [(expected,)]


def test_a_partition_without_its_delivery_names_the_month_folder_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churn_pipeline.definitions import defs
    from churn_pipeline.defs.partitions import register_delivery_months

    raw = tmp_path / "raw"
    for month in ("2024-05", "2024-06"):
        (raw / month).mkdir(parents=True)
        (raw / month / "orders.csv").write_text(f"order_id,customer_id,ordered_at,amount\n{month},c1,{month}-10T00:00:00Z,10\n")
    monkeypatch.setenv("CHURN_RAW_DIR", str(raw))
    with dg.instance_for_test() as instance:
        register_delivery_months(instance, raw)
        shutil.rmtree(raw / "2024-06")  # registered, then withdrawn
        job = defs().resolve_job_def("churn_pipeline_job")
        result = job.execute_in_process(
            run_config=_config(raw, tmp_path), instance=instance, partition_key="2024-06", raise_on_error=False
        )
    from churn_pipeline.defs.alerts import step_failure

    failures = sorted(step_failure(event) for event in result.get_step_failure_events())
    expected = "month 2024-06: {} has no orders* or subscription_events* files (.csv, .csv.gz or .parquet), so there is no 2024-06 delivery to load {}* from"
    assert failures == [
        f"raw__{name}: " + expected.format(raw / "2024-06", name) for name in ("fx_rates", "orders", "subscription_events")
    ]


def test_a_killed_cli_run_is_marked_failed_and_frees_its_slot(tmp_path: Path) -> None:
    import fcntl

    from churn_pipeline.launch import cli_run_tags, fail_abandoned_runs
    from churn_pipeline.lib.run_lock import lock_path

    warehouse = WarehouseSettings(database=str(tmp_path / "w.duckdb"))
    pools = {"concurrency": {"pools": {"granularity": "op", "default_limit": 1}}}
    with dg.instance_for_test(overrides=pools) as instance:
        tags = cli_run_tags(warehouse)
        run = instance.add_run(dg.DagsterRun(job_name="churn_pipeline_job", status=dg.DagsterRunStatus.STARTED, tags=tags))
        other = instance.add_run(  # the same, on another warehouse
            dg.DagsterRun(
                job_name="churn_pipeline_job",
                status=dg.DagsterRunStatus.STARTED,
                tags={**tags, "churn_pipeline/warehouse_file": "/x.duckdb"},
            )
        )
        instance.event_log_storage.initialize_concurrency_limit_to_default(WAREHOUSE_POOL)
        instance.event_log_storage.claim_concurrency_slot(WAREHOUSE_POOL, run.run_id, "raw__orders")

        fd = os.open(lock_path(tmp_path / "w.duckdb"), os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)  # its process still holds the lock: alive
        try:
            assert fail_abandoned_runs(instance, warehouse) == []
        finally:
            os.close(fd)
        assert fail_abandoned_runs(instance, warehouse) == [run.run_id]
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(other.run_id).status == dg.DagsterRunStatus.STARTED
        assert instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots == []
