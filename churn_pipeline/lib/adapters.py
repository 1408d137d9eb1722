"""Source adapters: map a raw layout that is not the contract's onto the contract's inputs.

An adapter is a folder `dbt_like_sql/sources/<name>/` with
- `source.toml`: the files to read (`[files.<table>]` with a name `pattern` and the
  `required` columns), the `source_timezone` of naive timestamps, and `[options]` with
  their defaults (overridable with `--source-option key=value`);
- `orders.sql` and/or `subscription_events.sql` (and optionally `fx_rates.sql`): one
  select each over the loaded files (`raw.src_<table>`), returning the contract's raw
  columns as text plus `source_file` and `source_row`. Options reach it as `$name`.
No Python is needed to add one.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from churn_pipeline.lib.duck import transaction
from churn_pipeline.lib.identifiers import IdentifierError, validate_identifier
from churn_pipeline.lib.ingest import FileLoad, RawInputError, _create_raw_table, _create_rejects_table, file_header
from churn_pipeline.lib.raw_sources import RawSource, file_format, inside_raw_dir
from churn_pipeline.lib.raw_text import load_text_file
from churn_pipeline.lib.sql_models import _PARAMETER, SQL_ROOT, _code_only

SOURCES_ROOT = SQL_ROOT / "sources"


class AdapterError(ValueError):
    """A wrong adapter name, option or definition; one line naming it."""


@dataclass(frozen=True)
class FileSpec:
    table: str
    pattern: str
    required: tuple[str, ...]


@dataclass(frozen=True)
class Adapter:
    name: str
    root: Path
    description: str
    source_timezone: str | None
    reporting_currency: str | None
    files: tuple[FileSpec, ...]
    defaults: dict[str, object] = field(default_factory=dict)

    def sql_for(self, contract_source: str) -> str | None:
        path = self.root / f"{contract_source}.sql"
        return path.read_text(encoding="utf-8").strip().rstrip(";") if path.exists() else None

    def options(self, overrides: dict[str, str]) -> dict[str, object]:
        """Defaults with the user's overrides, each converted to its default's type."""
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise AdapterError(
                f"--source-option: {', '.join(sorted(unknown))} is not an option of source {self.name!r} "
                f"(options: {', '.join(sorted(self.defaults)) or 'none'})"
            )
        values = dict(self.defaults)
        for key, text in overrides.items():
            default = self.defaults[key]
            try:
                if isinstance(default, bool):
                    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    values[key] = text.lower() in ("true", "1", "yes")
                else:
                    values[key] = type(default)(text)
            except ValueError:
                raise AdapterError(f"--source-option {key}: {text!r} is not a {type(default).__name__}") from None
        return values


def available_adapters() -> list[str]:
    return sorted(p.name for p in SOURCES_ROOT.iterdir() if (p / "source.toml").exists()) if SOURCES_ROOT.exists() else []


def load_adapter(name: str) -> Adapter:
    try:
        validate_identifier(name, "--source")
    except IdentifierError as exc:
        raise AdapterError(str(exc)) from None
    root = SOURCES_ROOT / name
    if not (root / "source.toml").exists():
        raise AdapterError(f"--source: no adapter {name!r} (available: {', '.join(available_adapters()) or 'none'})")
    spec = tomllib.loads((root / "source.toml").read_text(encoding="utf-8"))
    files = tuple(
        FileSpec(validate_identifier(table, "file table"), entry["pattern"], tuple(c.lower() for c in entry.get("required", ())))
        for table, entry in spec.get("files", {}).items()
    )
    return Adapter(
        name,
        root,
        spec.get("description", ""),
        spec.get("source_timezone"),
        spec.get("reporting_currency"),
        files,
        dict(spec.get("options", {})),
    )


def source_for_files(spec: FileSpec, first: Path, header: list[str]) -> RawSource:
    """A RawSource keeping every column of the spec's first file (lower-cased), requiring the declared ones."""
    columns = []
    for written in header:
        name = written.strip().lower()
        try:
            columns.append(validate_identifier(name, f"{first.name}: column"))
        except IdentifierError as exc:
            raise RawInputError(str(exc)) from None
    optional = tuple(c for c in columns if c not in spec.required)
    return RawSource(name=f"src_{spec.table}", required=spec.required, optional=optional)


def spec_files(adapter: Adapter, spec: FileSpec, raw_dir: Path) -> list[Path]:
    """The files `spec` names, sorted; none is a mistake naming the pattern."""
    paths = sorted(
        (p for p in raw_dir.glob(spec.pattern) if file_format(p) and inside_raw_dir(p, raw_dir).is_file()), key=lambda p: p.name
    )
    if not paths:
        raise RawInputError(f"source {adapter.name}: no file matching {spec.pattern!r} in {raw_dir}")
    return paths


def read_specs(adapter: Adapter, sql: str) -> list[FileSpec]:
    """The adapter's file tables that `sql` reads (`raw.src_<table>`)."""
    code = _code_only(sql)
    return [spec for spec in adapter.files if f"raw.src_{spec.table}" in code]


def bound_options(adapter: Adapter, contract: str, sql: str, options: dict[str, object]) -> dict[str, object]:
    """The options `sql` uses as `$name`, each of which must be one of the adapter's [options]."""
    used = set(_PARAMETER.findall(_code_only(sql)))
    missing = used - options.keys()
    if missing:
        raise AdapterError(f"{adapter.name}/{contract}.sql uses ${', $'.join(sorted(missing))}, not in its [options]")
    return {k: options[k] for k in used}


def repeated_row_key_error(adapter_file: str, file: str, row: int, count: int) -> AdapterError:
    return AdapterError(
        f"{adapter_file}: {count} output rows share source_file {file!r}, source_row {row}; "
        "each output row must point back at its own source row (use min(source_row) for a group)"
    )


def check_adapter_inputs(adapter: Adapter, raw_dir: Path) -> list[Path]:
    if not raw_dir.is_dir():
        raise RawInputError(f"raw directory {raw_dir} does not exist")
    return [path for spec in adapter.files for path in spec_files(adapter, spec, raw_dir)]


def load_through_adapter(
    conn: duckdb.DuckDBPyConnection, adapter: Adapter, contract: RawSource, raw_dir: Path, options: dict[str, object]
) -> list[FileLoad]:
    """Load the files the adapter's `<contract>.sql` reads, then build raw.<contract> from it."""
    sql = adapter.sql_for(contract.name)
    _create_rejects_table(conn)
    with transaction(conn):
        _create_raw_table(conn, contract)
        loads: list[FileLoad] = []
        if sql is not None:
            for spec in read_specs(adapter, sql):
                paths = spec_files(adapter, spec, raw_dir)
                source = source_for_files(spec, paths[0], file_header(conn, paths[0]))
                _create_raw_table(conn, source)
                conn.execute("delete from raw.csv_rejects where source = $s", {"s": source.name})
                loads.extend(load_text_file(conn, source, path, raw_dir) for path in paths)
            bound = bound_options(adapter, contract.name, sql, options)
            columns = ", ".join(f"cast({c} as varchar)" for c in contract.columns)
            try:
                conn.execute(
                    f"insert into raw.{contract.name} select {columns}, source_file::varchar, source_row::bigint, null from ({sql})",
                    bound,
                )
            except duckdb.BinderException as exc:
                raise AdapterError(f"{adapter.name}/{contract.name}.sql: {str(exc).splitlines()[0]}") from None
            _require_row_keys(conn, f"{adapter.name}/{contract.name}.sql", contract.name)
    return loads


def _require_row_keys(conn: duckdb.DuckDBPyConnection, adapter_file: str, table: str) -> None:
    """(source_file, source_row) must name one output row: the quarantine finds a row's raw text by it."""
    repeated = conn.execute(
        f"select source_file, source_row, count(*) from raw.{table} group by all having count(*) > 1 order by all limit 1"
    ).fetchall()
    if repeated:
        raise repeated_row_key_error(adapter_file, *repeated[0])
