"""How `churn-pipeline run` starts the job: on the project's instance, with the same job and
run config the UI's launchpad uses, over the delivery months it asks for."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from filelock import FileLock, Timeout

from churn_pipeline.defs.partitions import RAW_DIR_ENV, delivery_partitions, register_delivery_months
from churn_pipeline.lib.raw_sources import delivered_months
from churn_pipeline.lib.run_lock import lock_path
from churn_pipeline.lib.settings import PipelineSettings, WarehouseSettings

JOB = "churn_pipeline_job"
LAUNCHED_BY_CLI = {"churn_pipeline/launched_by": "cli"}


def cli_run_tags(warehouse: WarehouseSettings) -> dict[str, str]:
    """The tags of a CLI run: who launched it and the warehouse file it builds."""
    return {**LAUNCHED_BY_CLI, "churn_pipeline/warehouse_file": os.path.abspath(warehouse.location)}


UNFINISHED = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]


def launch_run(
    instance: dg.DagsterInstance,
    pipeline: PipelineSettings,
    warehouse: WarehouseSettings,
    run_config: dict,
    months: tuple[str, ...] | None,
) -> dg.ExecuteInProcessResult:
    """Run the job in this process, recorded in `instance`.

    The definitions serve the run's raw directory, so a month-by-month directory gets its
    partitions: each delivered month is registered, one month is a partition run, several a
    partition-range run, and a full run covers every delivered month."""
    from churn_pipeline.definitions import defs

    with _serving(pipeline.raw_path):
        job = defs().resolve_job_def(JOB)
        fail_abandoned_runs(instance, warehouse)
        tags = cli_run_tags(warehouse)
        partition_key = None
        if delivery_partitions() is not None and not pipeline.source:
            register_delivery_months(instance, pipeline.raw_path)
            chosen = months or tuple(delivered_months(pipeline.raw_path))
            if len(chosen) == 1:
                partition_key = chosen[0]
            else:
                tags |= {ASSET_PARTITION_RANGE_START_TAG: chosen[0], ASSET_PARTITION_RANGE_END_TAG: chosen[-1]}
        return job.execute_in_process(
            run_config=run_config, instance=instance, partition_key=partition_key, tags=tags, raise_on_error=False
        )


@contextmanager
def _serving(raw_dir: Path) -> Iterator[None]:
    """The code location's raw directory (`CHURN_RAW_DIR`) set to the run's while it runs."""
    previous = os.environ.get(RAW_DIR_ENV)
    os.environ[RAW_DIR_ENV] = str(raw_dir)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RAW_DIR_ENV, None)
        else:
            os.environ[RAW_DIR_ENV] = previous


def fail_abandoned_runs(instance: dg.DagsterInstance, warehouse: WarehouseSettings) -> list[str]:
    """Mark failed the CLI runs on this warehouse that never finished (their process was killed),
    freeing their pool slots; only when no run holds the warehouse's run lock. Returns their ids."""
    records = instance.get_run_records(dg.RunsFilter(job_name=JOB, statuses=UNFINISHED, tags=cli_run_tags(warehouse)))
    if not records:
        return []
    lock = FileLock(lock_path(warehouse.location.absolute()))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return []  # a run is going: its run is not abandoned
    try:
        for record in records:
            instance.report_run_failed(record.dagster_run, "its churn-pipeline process ended before the run finished")
            instance.event_log_storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
    finally:
        lock.release()
    return [record.dagster_run.run_id for record in records]
