"""Monthly partitions of the raw deliveries, and the schedule that loads the month that just closed.

Environment (read when the code location loads):
  CHURN_FIRST_MONTH       first partition, YYYY-MM (default 2023-01)
  CHURN_TIMEZONE          time zone of the month boundaries and of the schedule (default UTC);
                          use the same zone as the run's `timezone` setting
  CHURN_SCHEDULE_DAY      day of the month the schedule fires (1-28, default 2)
  CHURN_SCHEDULE_HOUR     hour it fires (0-23, default 6)
"""

import os
from collections.abc import Mapping

import dagster as dg

from churn_pipeline.lib.months import month_keys, parse_month
from churn_pipeline.lib.settings import SettingsError, parse_timezone


def _int_setting(name: str, default: int, low: int, high: int) -> int:
    text = os.environ.get(name, str(default))
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise SettingsError(f"{name}: {text!r} is not a whole number from {low} to {high}")
    return int(text)


FIRST_MONTH = parse_month(os.environ.get("CHURN_FIRST_MONTH", "2023-01"), "CHURN_FIRST_MONTH").strftime("%Y-%m")
TIMEZONE = parse_timezone(os.environ.get("CHURN_TIMEZONE", "UTC"), "CHURN_TIMEZONE")
SCHEDULE_DAY = _int_setting("CHURN_SCHEDULE_DAY", 2, 1, 28)
SCHEDULE_HOUR = _int_setting("CHURN_SCHEDULE_HOUR", 6, 0, 23)

# end_offset=0: the newest partition is the last month that has closed.
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, fmt="%Y-%m", timezone=TIMEZONE, end_offset=0)


def run_months(tags: Mapping[str, str]) -> tuple[str, ...] | None:
    """The months a run loads, from its Dagster tags: one partition, a backfill range, or None (every file)."""
    if "dagster/partition" in tags:
        return (tags["dagster/partition"],)
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and end:
        return month_keys(start, end)
    return None
