"""The peer "lower bound": DuckDB loading every raw file once into a table of a fresh DuckDB
file, all columns as text; the least work any pipeline that keeps its raw data must do.
Usage: python lower_bound.py RAW_DIR DATABASE"""

import sys
from pathlib import Path

import duckdb


def main() -> None:
    raw, database = Path(sys.argv[1]), Path(sys.argv[2])
    database.unlink(missing_ok=True)
    conn = duckdb.connect(str(database))
    for source in ("orders", "subscription_events", "fx_rates"):
        files = sorted(str(path) for path in raw.glob(f"**/{source}*.csv"))
        if files:
            conn.execute(
                f"create table {source} as select * from read_csv($files, all_varchar = true, union_by_name = true)",
                {"files": files},
            )
    conn.close()


if __name__ == "__main__":
    main()
