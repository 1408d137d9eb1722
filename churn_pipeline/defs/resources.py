"""Dagster resources: the pipeline settings and the warehouse (DuckDB, or Spark), and the operational limits
every step that opens the warehouse shares."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
from filelock import FileLock
from pydantic import PrivateAttr

from churn_pipeline.defs.partitions import RAW_DIR_ENV
from churn_pipeline.lib.build_area import build_path, open_build, open_output_build, start_build
from churn_pipeline.lib.months import end_of_month
from churn_pipeline.lib.run_lock import acquire_run_lock
from churn_pipeline.lib.settings import PipelineSettings, WarehouseSettings, parse_as_of
from churn_pipeline.lib.warehouse_tables import DuckDBTables, SparkTables, WarehouseTables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

progress_log = logging.getLogger("churn_pipeline.progress")

# every step that opens the warehouse: one at a time (the instance's pool limit, dagster.yaml)
WAREHOUSE_POOL = "duckdb_warehouse"
# a file still being written, or a lock another process will release: retried 2, 4, 8 and 16 s later
TRANSIENT_RETRIES = dg.RetryPolicy(max_retries=4, delay=2, backoff=dg.Backoff.EXPONENTIAL)


class PipelineConfig(dg.ConfigurableResource, PipelineSettings):
    """Where the raw files are, where outputs go, and how time and churn are defined
    (the fields are declared once, in lib/settings.py)."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        open_output_build(self.output_path, context.run.run_id)

    def as_of_instant(self, months: tuple[str, ...] | None):
        """`as_of` when given; in a run of delivery months, the close of the last; else None (latest data)."""
        explicit = parse_as_of(self.as_of)
        if explicit is None and months:
            return end_of_month(months[-1], self.timezone)
        return explicit

    def run_sql_parameters(self, months: tuple[str, ...] | None) -> dict[str, object]:
        """The values the SQL models of a run of these delivery months bind."""
        return self.sql_parameters(self.as_of_instant(months))


class Warehouse(dg.ConfigurableResource, WarehouseSettings):
    """The warehouse. On DuckDB a run writes to a build copy beside the live file; the
    `published` asset swaps it in atomically once every blocking check has passed, so
    analysts reading the live file are never blocked and never see half a refresh. On Spark
    (`engine: spark`) each table is replaced as it is built (docs/scale_out.md)."""

    _lock: FileLock | None = PrivateAttr(default=None)
    _database: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)
    # on Spark: the delivery files each raw step read, for the load manifest once staging has counted them
    _spark_files: dict = PrivateAttr(default_factory=dict)
    _spark_session: Any = PrivateAttr(default=None)

    @property
    def live_path(self) -> Path:
        return self.location

    @property
    def on_spark(self) -> bool:
        return self.engine == "spark"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # one run per warehouse at a time: a second run waits here rather than clobbering the build
        self._lock = acquire_run_lock(self.live_path, self.lock_timeout_seconds)
        if self.on_spark:
            return
        seeded = open_build(self.live_path, context.run.run_id)
        if seeded and ".wal" in seeded:
            line = f"warehouse {self.live_path}: {seeded}"
            context.log.warning(line)
            progress_log.warning(line)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close_build()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def close_build(self) -> None:
        """Close the build warehouse (it checkpoints); the next connection opens it again."""
        if self._database is not None:
            self._database.close()
            self._database = None

    def spark(self) -> "SparkSession":
        """The Spark session of this process (local, or on the Spark Connect server `spark_remote`)."""
        from churn_pipeline.lib.spark_build import create_schemas, spark_session

        # one session for the whole run: raw.* are session views the later steps read
        if self._spark_session is None:
            self._spark_session = spark_session(
                self.live_path.absolute(), self.spark_remote, driver_memory=self.spark_driver_memory
            )
            create_schemas(self._spark_session)
        return self._spark_session

    @property
    def spark_files(self) -> dict:
        return self._spark_files

    @contextmanager
    def tables(self) -> Iterator[WarehouseTables]:
        """The run's warehouse, for queries and frames, on its engine."""
        if self.on_spark:
            yield SparkTables(self.spark(), self.live_path.absolute())
        else:
            with self.get_connection() as conn:
                yield DuckDBTables(conn)

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the run's build warehouse; every step of a run shares one database instance."""
        if self.on_spark:
            raise RuntimeError("a DuckDB connection was asked for in a Spark run; use Warehouse.tables()")
        if self._database is None:
            build = build_path(self.live_path)
            if not build.exists():
                start_build(self.live_path)
            self._database = duckdb.connect(str(build))
            if self.memory_limit:
                self._database.execute("set memory_limit = $value", {"value": self.memory_limit})
            if self.threads:
                self._database.execute("set threads = $value", {"value": self.threads})
            if self.temp_directory:
                self._database.execute("set temp_directory = $value", {"value": self.temp_directory})
        conn = self._database.cursor()
        try:
            conn.execute("set TimeZone = 'UTC'")
            yield conn
        finally:
            conn.close()


@dg.definitions
def resources() -> dg.Definitions:
    raw_dir = {"raw_dir": dg.EnvVar(RAW_DIR_ENV)} if dg.EnvVar(RAW_DIR_ENV).get_value() else {}
    # steps run one after another in the run's process, which holds the run lock throughout
    return dg.Definitions(
        resources={"pipeline": PipelineConfig(**raw_dir), "warehouse": Warehouse()},
        executor=dg.in_process_executor,
    )
