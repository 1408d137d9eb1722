"""A safe connection for analysts: read-only, no file or network access, settings locked."""

from __future__ import annotations

from pathlib import Path

import duckdb


class WarehouseUnreadable(RuntimeError):
    """DuckDB cannot open the warehouse file; the message is one line naming it."""


def connect_readonly(warehouse: Path | str) -> duckdb.DuckDBPyConnection:
    """Open the published warehouse so that a query cannot write, read other files or change settings.

    The pipeline publishes by renaming a new file over this one, so a connection held open
    keeps reading the state it opened; reconnect to see a newer run.
    """
    path = Path(warehouse)
    if not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist (run `churn-pipeline run` first)")
    try:
        conn = duckdb.connect(
            str(path),
            read_only=True,
            config={"enable_external_access": False, "autoload_known_extensions": False, "autoinstall_known_extensions": False},
        )
    except duckdb.Error as exc:
        raise WarehouseUnreadable(f"cannot open warehouse {path}: {str(exc).splitlines()[0]}") from None
    conn.execute("set lock_configuration = true")
    return conn
