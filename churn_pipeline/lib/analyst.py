"""A safe connection for analysts: read-only, no file or network access, settings locked."""

from __future__ import annotations

from pathlib import Path

import duckdb


def connect_readonly(warehouse: Path | str) -> duckdb.DuckDBPyConnection:
    """Open the published warehouse so that a query cannot write, read other files or change settings.

    The pipeline publishes by renaming a new file over this one, so a connection held open
    keeps reading the state it opened; reconnect to see a newer run.
    """
    path = Path(warehouse)
    if not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist (run `churn-pipeline run` first)")
    conn = duckdb.connect(
        str(path),
        read_only=True,
        config={"enable_external_access": False, "autoload_known_extensions": False, "autoinstall_known_extensions": False},
    )
    conn.execute("set lock_configuration = true")
    return conn
