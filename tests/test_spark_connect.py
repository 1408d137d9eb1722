"""The pipeline through a Spark Connect server, as on a cluster (a module of its own: it runs no
local session, so it can share no worker's)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import polars as pl
import pytest
from spark_compare import PUBLISHED, differences


# the client runs in a process of its own: a process that holds a local Spark session cannot open a remote one
@pytest.mark.slow
def test_the_worked_example_through_a_spark_connect_server(tmp_path: Path, worked_example_dir: Path) -> None:
    """A local Spark Connect server, started from the pyspark package and stopped by its PID: the
    pipeline run through it (`churn-pipeline run --engine spark --spark-remote`), as on a cluster,
    publishes DuckDB's tables, file by file."""
    import socket
    import subprocess
    import sys
    import time

    import pyspark

    home = Path(pyspark.__file__).parent
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_PID_DIR": str(tmp_path),
        "SPARK_LOG_DIR": str(tmp_path),
        "SPARK_IDENT_STRING": "churn-pipeline-test",
    }
    subprocess.run(
        [
            str(home / "sbin" / "start-connect-server.sh"),
            *("--master", "local[2]"),
            *("--conf", f"spark.connect.grpc.binding.port={port}"),
            *("--conf", f"spark.sql.warehouse.dir={tmp_path / 'server-warehouse'}"),
        ],
        env=environment,
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    pid_files = list(tmp_path.glob("*SparkConnectServer*.pid"))
    assert len(pid_files) == 1, sorted(path.name for path in tmp_path.iterdir())
    pid = int(pid_files[0].read_text().strip())
    try:
        deadline = time.monotonic() + 180
        while True:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the Spark Connect server did not answer in 180 s"
            time.sleep(1)
        run = [sys.executable, "-m", "churn_pipeline.cli", "run", "--raw-dir", str(worked_example_dir)]
        on_spark = subprocess.run(
            [
                *run,
                *("--engine", "spark", "--spark-remote", f"sc://127.0.0.1:{port}"),
                *("--warehouse", str(tmp_path / "spark-warehouse"), "--output-dir", str(tmp_path / "spark-out")),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert on_spark.returncode == 0, on_spark.stderr[-3000:]
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(pid)

    on_duckdb = subprocess.run(
        [*run, "--warehouse", str(tmp_path / "w.duckdb"), "--output-dir", str(tmp_path / "duckdb-out")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert on_duckdb.returncode == 0, on_duckdb.stderr[-3000:]
    published = sorted(path.name for path in (tmp_path / "duckdb-out").glob("*.parquet"))
    assert published == sorted(f"{name}.parquet" for name in PUBLISHED)
    assert sorted(path.name for path in (tmp_path / "spark-out").glob("*.parquet")) == published
    failures = {
        name: problems
        for name in published
        if (
            problems := differences(
                pl.read_parquet(tmp_path / "spark-out" / name), pl.read_parquet(tmp_path / "duckdb-out" / name)
            )
        )
    }
    assert failures == {}
    assert pl.read_parquet(tmp_path / "duckdb-out" / "cohort_retention.parquet").height > 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
