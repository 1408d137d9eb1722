"""Releasing a finished build: the build warehouse, then each Parquet file and the report, take
the live names, each with one `os.replace`, so a reader sees the old state or the new one and a
crash at any point leaves the previous outputs whole."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from churn_pipeline.lib.build_area import build_dir, build_path, run_marker, wal_path
from churn_pipeline.lib.output_files import output_path


def release_build(live: Path, output_dir: Path) -> list[str]:
    """Swap the build warehouse in, then each built file; returns the names released.

    A WAL beside the live file belongs to the file being replaced (its contents were replayed
    into the build when the run started): it is removed before the swap, so DuckDB never
    replays it against the new file."""
    build = build_path(live)
    conn = duckdb.connect(str(build))
    try:
        conn.execute("checkpoint")
    finally:
        conn.close()
    if wal_path(build).exists():
        raise RuntimeError(f"{build} still has a WAL after its checkpoint; nothing was released")
    wal_path(live).unlink(missing_ok=True)
    os.replace(build, live)
    run_marker(live).unlink(missing_ok=True)
    return [live.name, *release_outputs(output_dir)]


def release_outputs(output_dir: Path) -> list[str]:
    """Swap each built Parquet file and the report in; returns the names released."""
    released = []
    built = build_dir(output_dir)
    for suffix in (".parquet", ".html"):
        for path in sorted(built.glob(f"*{suffix}")) if built.exists() else []:
            os.replace(path, output_path(output_dir, path.stem, suffix))
            released.append(path.name)
    if built.exists():
        shutil.rmtree(built)
    return released
