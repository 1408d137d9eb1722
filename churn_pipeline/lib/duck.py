"""Small DuckDB helpers. DuckDB 2.0 streams results, so every read here drains its result."""

from __future__ import annotations

from typing import Any

import duckdb


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, parameters: Any = None) -> Any:
    rows = conn.execute(sql, parameters).fetchall() if parameters is not None else conn.execute(sql).fetchall()
    return rows[0][0] if rows else None


def rows(conn: duckdb.DuckDBPyConnection, sql: str, parameters: Any = None) -> list[tuple]:
    return conn.execute(sql, parameters).fetchall() if parameters is not None else conn.execute(sql).fetchall()
