"""Published files: paths kept inside the output directory, written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from churn_pipeline.lib.identifiers import validate_identifier


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


def _replace_atomically(path: Path, write: Callable[[str], None]) -> Path:
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
    """Write a table as Parquet with its key-value metadata, atomically."""
    arrow = frame.to_arrow()
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **{k: str(v) for k, v in metadata.items()}})
    return _replace_atomically(output_path(output_dir, table), lambda temporary: pq.write_table(arrow, temporary))


def write_text_atomic(text: str, output_dir: Path, name: str, suffix: str) -> Path:
    """Write a text file (the HTML report) the same way."""
    return _replace_atomically(
        output_path(output_dir, name, suffix), lambda temporary: Path(temporary).write_text(text, encoding="utf-8")
    )
