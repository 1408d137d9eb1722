"""The warehouse layer alone, on DuckDB or on Spark: the delivery files read and every SQL model
built (lib/warehouse_build.py, lib/spark_build.py), the part of the pipeline that runs on both
engines today (docs/scale_out.md). run.py --spark times both, taking turns.

    python benchmarks/warehouse_layer.py duckdb|spark RAW_DIR OUT_DIR [MEMORY]
"""

import shutil
import sys
from pathlib import Path

import duckdb

from churn_pipeline.lib.settings import PipelineSettings


def main() -> int:
    engine, raw, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    memory = sys.argv[4] if len(sys.argv) > 4 else None
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    settings = PipelineSettings(raw_dir=str(raw))
    if engine == "duckdb":
        from churn_pipeline.lib.warehouse_build import build_warehouse

        conn = duckdb.connect(str(out / "warehouse.duckdb"))
        if memory:
            conn.execute("set memory_limit = $limit", {"limit": memory})
        conn.execute("set temp_directory = $path", {"path": str(out / "spill")})
        build_warehouse(conn, settings)
        conn.close()
    elif engine == "spark":
        from churn_pipeline.lib.spark_build import build_warehouse, spark_session

        spark = spark_session(out / "spark-warehouse", driver_memory=memory.lower() if memory else None)
        build_warehouse(spark, settings, out / "spark-warehouse")
        spark.stop()
    else:
        raise SystemExit(f"engine must be duckdb or spark, not {engine!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
