"""The observation window a run computed: as_of and the last complete month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import duckdb


@dataclass(frozen=True)
class Observation:
    as_of: datetime | None
    last_complete_month: date | None


def read_observation(conn: duckdb.DuckDBPyConnection) -> Observation:
    rows = conn.execute("select as_of, last_complete_month from staging.int_observation_window").fetchall()
    return Observation(*rows[0]) if rows else Observation(None, None)
