"""The observation window a run computed: as_of and the last complete month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from churn_pipeline.lib.warehouse_tables import WarehouseTables


@dataclass(frozen=True)
class Observation:
    as_of: datetime | None
    last_complete_month: date | None


def read_observation(tables: WarehouseTables) -> Observation:
    rows = tables.frame("select as_of, last_complete_month from staging.int_observation_window").rows()
    return Observation(*rows[0]) if rows else Observation(None, None)
