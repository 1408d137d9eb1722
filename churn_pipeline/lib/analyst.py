"""A safe connection for analysts: read-only, no file or network access, settings locked."""

from __future__ import annotations

from pathlib import Path

import duckdb


class WarehouseUnreadable(RuntimeError):
    """DuckDB cannot open the warehouse file; the message is one line naming it."""


def connect_readonly(warehouse: Path | str) -> duckdb.DuckDBPyConnection:
    """Open the published warehouse so that a query cannot write, read other files or change settings.

    The pipeline publishes by renaming a new file over this one, so a connection held open
    keeps reading the state it opened; reconnect to see a newer run. Several connections in one
    process (a notebook) share one database, so a new one opened while another is still open
    reads that same state: close them all to see a newer run.
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
    # a second connection in this process shares the first one's database, already locked
    if not conn.sql("select current_setting('lock_configuration')").fetchall()[0][0]:
        conn.execute("set lock_configuration = true")
    return conn
