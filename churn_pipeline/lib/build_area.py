"""A run's build area: the warehouse and output files it writes before they are published.

The warehouse is built in `.<name>.build` beside the live file (seeded with a copy of it), the
Parquet files and the report in `<output_dir>/.build/`. A crashed run's leftovers are removed
when the next run starts; `lib/release.py` swaps a finished build in. Each area is marked with
the run that owns it, so the later steps of a run resume it, also when every step is its own
process (a multi-process executor).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

BUILD_DIR = ".build"


def build_path(live: Path) -> Path:
    return live.with_name(f".{live.name}.build")


def build_dir(output_dir: Path) -> Path:
    return output_dir / BUILD_DIR


def run_marker(live: Path) -> Path:
    """Names the run that owns the build warehouse."""
    return live.with_name(f".{live.name}.build.run")


def _owned_by(marker: Path, run_id: str) -> bool:
    return marker.exists() and marker.read_text(encoding="utf-8") == run_id


def open_build(live: Path, run_id: str) -> str | None:
    """The run's build warehouse: started (`start_build`) by the run's first step, resumed by its
    later ones. Returns how it was seeded, or None when resumed."""
    marker = run_marker(live)
    if _owned_by(marker, run_id) and build_path(live).exists():
        return None
    marker.unlink(missing_ok=True)
    seeded = start_build(live)
    marker.write_text(run_id, encoding="utf-8")
    return seeded


def open_output_build(output_dir: Path, run_id: str) -> None:
    """The run's output build directory: a previous run's leftovers removed on its first step."""
    marker = build_dir(output_dir) / ".run"
    if _owned_by(marker, run_id):
        return
    clean_output_leftovers(output_dir)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(run_id, encoding="utf-8")


def wal_path(database: Path) -> Path:
    """DuckDB's write-ahead log beside a database file."""
    return database.with_name(database.name + ".wal")


def stale_wal_path(live: Path) -> Path:
    return live.with_name(live.name + ".wal.stale")


def start_build(live: Path) -> str:
    """A fresh build warehouse: leftovers of a crashed run removed, seeded with the live file.
    Returns how it was seeded ("copied" or "new"), and for a live file with a leftover WAL, what
    was done with it."""
    build = build_path(live)
    live.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (build, wal_path(build)):
        leftover.unlink(missing_ok=True)
    if wal_path(live).exists():
        return _start_from_leftover_wal(live, build)
    if not live.exists():
        return "new"
    shutil.copyfile(live, build)
    return "copied"


def _start_from_leftover_wal(live: Path, build: Path) -> str:
    """A WAL beside the live file was left by a writer that ended without closing (kill -9 of a
    read-write connection). The build starts from the live file with that WAL replayed (DuckDB
    replays it on open), so what the writer committed is kept; the live file itself is never
    opened for writing. A WAL that does not replay is not the live file's: it is set aside,
    because every open of the live file would fail on it."""
    wal = wal_path(live)
    shutil.copyfile(live, build)
    shutil.copyfile(wal, wal_path(build))
    try:
        duckdb.connect(str(build)).close()  # replays the log and checkpoints
        return f"copied; replayed the leftover {wal.name} of a writer that did not close"
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0]
    for leftover in (build, wal_path(build)):
        leftover.unlink(missing_ok=True)
    os.replace(wal, stale_wal_path(live))
    shutil.copyfile(live, build)
    return f"copied; set aside {wal.name}, which does not replay ({reason}), as {stale_wal_path(live).name}"


def clean_output_leftovers(output_dir: Path) -> None:
    """Remove a crashed run's build files and temporary files (never a published file)."""
    if build_dir(output_dir).exists():
        shutil.rmtree(build_dir(output_dir))
    for pattern in (".*.parquet.tmp", ".*.html.tmp"):
        for leftover in output_dir.glob(pattern) if output_dir.exists() else []:
            leftover.unlink(missing_ok=True)
