"""Delivery-month partitions: they exist only where the raw data is delivered month by month.

The code location serves one raw directory: `CHURN_RAW_DIR` (read when the definitions load),
else the `raw_dir` setting's default. When it holds `YYYY-MM/` folders the raw assets are
partitioned by `delivery_month`, a dynamic partition per folder: the `delivery_months` sensor
(and `churn-pipeline run`) add a month when its folder appears, so every partition shown can be
materialized. A flat directory gives unpartitioned raw assets: "Materialize all" is one plain run.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from churn_pipeline.lib.raw_sources import delivered_months
from churn_pipeline.lib.settings import PipelineSettings

RAW_DIR_ENV = "CHURN_RAW_DIR"
delivery_month_partitions = dg.DynamicPartitionsDefinition(name="delivery_month")


def code_location_raw_dir() -> Path:
    """The raw directory this code location serves (and its UI runs read by default)."""
    return Path(dg.EnvVar(RAW_DIR_ENV).get_value() or PipelineSettings.model_fields["raw_dir"].default)


def delivery_partitions() -> dg.DynamicPartitionsDefinition | None:
    """`delivery_month` partitions for a month-by-month raw directory, None for a flat one."""
    return delivery_month_partitions if delivered_months(code_location_raw_dir()) else None


def unregistered_months(instance: dg.DagsterInstance, raw_dir: Path) -> list[str]:
    """The delivered month folders the instance has no partition for yet."""
    known = set(instance.get_dynamic_partitions(delivery_month_partitions.name))
    return [month for month in delivered_months(raw_dir) if month not in known]


def register_delivery_months(instance: dg.DagsterInstance, raw_dir: Path) -> list[str]:
    """Add a partition for every delivered month folder the instance does not know yet; returns them."""
    new = unregistered_months(instance, raw_dir)
    if new:
        instance.add_dynamic_partitions(delivery_month_partitions.name, new)
    return new


def run_months(context: dg.AssetExecutionContext) -> tuple[str, ...] | None:
    """The delivery months of this run (one partition or a backfill range), None for every file.
    Unpartitioned assets of a partitioned run see the run's months too."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    return tuple(context.partition_keys)
