"""Writing published tables, and publishing a run's results atomically.

A run builds everything in staging: the warehouse in `.<name>.build` beside the live
file (seeded with a copy of it), Parquet files in `<output_dir>/.staging/`. Publishing
checkpoints the staged warehouse and renames it over the live file, then renames each
Parquet file into the output directory: every step is one `os.replace`, so a reader sees
the old state or the new one, and a crash at any point leaves the previous outputs whole.
Leftovers of a crashed run are removed when the next run starts.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

from churn_pipeline.lib.identifiers import qualified, validate_identifier


class OutputPathError(ValueError):
    pass


def output_path(output_dir: Path, table: str, suffix: str = ".parquet") -> Path:
    """`<output_dir>/<table>.parquet` (or another suffix), refused unless it resolves inside output_dir."""
    validate_identifier(table, "table")
    root = output_dir.resolve()
    path = (root / f"{table}{suffix}").resolve()
    if path.parent != root:
        raise OutputPathError(f"output path {path} is outside the output directory {root}")
    return path


def write_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pl.DataFrame) -> None:
    """Replace `schema.table` with the frame's rows (handed over as Arrow)."""
    arrow = frame.to_arrow()
    conn.register("frame_to_write", arrow)
    try:
        conn.execute(f"create or replace table {qualified(schema, table)} as select * from frame_to_write")
    finally:
        conn.unregister("frame_to_write")


STAGING_DIR = ".staging"


def staged_path(live: Path) -> Path:
    return live.with_name(f".{live.name}.build")


class WarehouseBusy(RuntimeError):
    """Another run holds the warehouse's run lock."""


def lock_path(live: Path) -> Path:
    return live.with_name(f".{live.name}.lock")


def acquire_run_lock(live: Path, timeout_seconds: float) -> int:
    """Wait up to `timeout_seconds` until no other run builds this warehouse; returns the lock's fd.

    The OS releases the lock when the process ends, however it ends, so a killed run never leaves it held.
    """
    live.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(live), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise WarehouseBusy(
                    f"another run is building {live} (lock {lock_path(live)} held for {timeout_seconds:g}s); "
                    "try again when it finishes"
                ) from None
            time.sleep(0.25)


def release_run_lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def wal_path(database: Path) -> Path:
    """DuckDB's write-ahead log beside a database file."""
    return database.with_name(database.name + ".wal")


def stale_wal_path(live: Path) -> Path:
    return live.with_name(live.name + ".wal.stale")


def start_build(live: Path) -> str:
    """A fresh staged warehouse: leftovers of a crashed run removed, seeded with the live file.
    Returns how it was seeded: "copied ahead" (`copy_ahead`'s copy), "copied" or "new", and for
    a live file with a leftover WAL, what was done with it."""
    build = staged_path(live)
    live.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (build, wal_path(build)):
        leftover.unlink(missing_ok=True)
    early = _copies_ahead.pop(live.resolve(), None)
    if wal_path(live).exists():
        if early is not None:
            early.discard()
        return _start_from_leftover_wal(live, build)
    if early is not None and early.link_if_current(live, build):
        return "copied ahead"
    if not live.exists():
        return "new"
    shutil.copyfile(live, build)
    # The copy sits in the page cache, and DuckDB's first commit would wait while all of it is
    # written out (1.5 s for a 1.2 GB warehouse). Start that now, beside the run's start-up.
    threading.Thread(target=write_out, args=(build,), name="write-out-staged-warehouse", daemon=True).start()
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


class _CopyAhead:
    """A copy of the live warehouse into an unnamed file (O_TMPFILE) in its directory, made in a
    background thread: if no build takes it, it vanishes with the process, even a killed one.
    Once copied, the thread also writes it out to disk (as `start_build` does for its own copy)."""

    def __init__(self, live: Path, fd: int) -> None:
        self.fd = fd
        self.copied = threading.Event()
        self.error: BaseException | None = None
        with open(live, "rb") as source:
            status = os.fstat(source.fileno())
            self.identity = _identity(status)
            self.thread = threading.Thread(
                target=self._copy, args=(os.dup(source.fileno()), status.st_size), name="copy-ahead-warehouse", daemon=True
            )
        self.thread.start()

    def _copy(self, source: int, size: int) -> None:
        flushed = None
        try:
            copied = 0
            while copied < size:
                done = os.copy_file_range(source, self.fd, size - copied, copied, copied)
                if done == 0:
                    raise OSError(f"the warehouse ended at {copied:,} of {size:,} bytes while it was copied")
                copied += done
            flushed = os.dup(self.fd)  # the build may close self.fd as soon as the copy is whole
        except BaseException as exc:
            self.error = exc
        finally:
            os.close(source)
            self.copied.set()
        if flushed is not None:
            try:
                os.fsync(flushed)
            except OSError:
                pass
            finally:
                os.close(flushed)

    def discard(self) -> None:
        self.copied.wait()
        os.close(self.fd)

    def link_if_current(self, live: Path, build: Path) -> bool:
        """Give the copy the build's name, if it is whole and the live file is still the one copied
        (another run may have published meanwhile: this copy was made without the run lock)."""
        try:
            self.copied.wait()
            if self.error is not None or not live.exists() or _identity(live.stat()) != self.identity:
                return False
            # with a directory fd CPython calls linkat(AT_SYMLINK_FOLLOW); plain link() would link the /proc symlink
            directory = os.open(build.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.link(f"/proc/self/fd/{self.fd}", build.name, dst_dir_fd=directory, follow_symlinks=True)
            finally:
                os.close(directory)
            return True
        except OSError:
            return False
        finally:
            os.close(self.fd)


def _identity(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


_copies_ahead: dict[Path, _CopyAhead] = {}


def copy_ahead(live: Path) -> None:
    """Start copying the live warehouse for this process's next `start_build`, in the background.

    The CLI calls it before importing Dagster: the imports (about 2.4 s) then hide the copy (0.9 s
    for a 1.2 GB warehouse). Best effort: without O_TMPFILE (not Linux, or the filesystem lacks
    it), or when the live file changes before the build starts, `start_build` copies as before."""
    if not live.exists() or not hasattr(os, "O_TMPFILE"):
        return
    stale = _copies_ahead.pop(live.resolve(), None)
    if stale is not None:  # a run that never started its build: drop its copy
        stale.discard()
    try:
        fd = os.open(live.resolve().parent, os.O_TMPFILE | os.O_RDWR, 0o644)
    except OSError:
        return
    try:
        _copies_ahead[live.resolve()] = _CopyAhead(live, fd)
    except OSError:
        os.close(fd)


def write_out(path: Path) -> None:
    """Flush a file's cached pages to disk; best effort (DuckDB's commits flush the warehouse anyway)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # gone already: a failed run removed its staged warehouse
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def staging_dir(output_dir: Path) -> Path:
    return output_dir / STAGING_DIR


def clean_output_leftovers(output_dir: Path) -> None:
    """Remove a crashed run's staged Parquet and temporary files (never a published file)."""
    if staging_dir(output_dir).exists():
        shutil.rmtree(staging_dir(output_dir))
    for pattern in (".*.parquet.tmp", ".*.html.tmp"):
        for leftover in output_dir.glob(pattern) if output_dir.exists() else []:
            leftover.unlink(missing_ok=True)


def publish_run(live: Path, output_dir: Path) -> list[str]:
    """Swap the staged warehouse in, then each staged Parquet file; returns what was published.

    A WAL beside the live file belongs to the file being replaced (its contents were replayed
    into the build when the run started): it is removed before the swap, so DuckDB never
    replays it against the new file."""
    build = staged_path(live)
    conn = duckdb.connect(str(build))
    try:
        conn.execute("checkpoint")
    finally:
        conn.close()
    if wal_path(build).exists():
        raise RuntimeError(f"{build} still has a WAL after its checkpoint; nothing was published")
    wal_path(live).unlink(missing_ok=True)
    os.replace(build, live)
    published = [live.name]
    staged = staging_dir(output_dir)
    for path in sorted(staged.glob("*.parquet")) if staged.exists() else []:
        os.replace(path, output_path(output_dir, path.stem))
        published.append(path.name)
    for path in sorted(staged.glob("*.html")) if staged.exists() else []:
        os.replace(path, output_path(output_dir, path.stem, ".html"))
        published.append(path.name)
    if staged.exists():
        shutil.rmtree(staged)
    return published


def _replace_atomically(path: Path, write) -> Path:
    """`write(temporary)` a file beside `path`, then rename it over `path`: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; readers may be other users
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_parquet(frame: pl.DataFrame, output_dir: Path, table: str, metadata: dict[str, str]) -> Path:
    """Write a published table with its key-value metadata, atomically."""
    arrow = frame.to_arrow()
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **{k: str(v) for k, v in metadata.items()}})
    return _replace_atomically(output_path(output_dir, table), lambda temporary: pq.write_table(arrow, temporary))


def write_text_atomic(text: str, output_dir: Path, name: str, suffix: str) -> Path:
    """Write a text file (the HTML report) the same way."""
    return _replace_atomically(
        output_path(output_dir, name, suffix), lambda temporary: Path(temporary).write_text(text, encoding="utf-8")
    )
