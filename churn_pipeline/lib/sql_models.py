"""The SQL model layer: one `select` per file in dbt_like_sql/<layer>/, file name = table name.

Dependencies are read from the SQL itself: every `raw.x`, `staging.x` or `marts.x` it
mentions. Values reach the SQL only as bound named parameters (`$timezone`, ...). A model is
built as a table unless a leading comment line says `-- materialized: view` (as dbt's
`materialized='view'`): for a cheap filter over a table, which readers then scan only for
the columns they use. A view can take no parameters and no temp macros.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

from churn_pipeline.lib.duck import scalar
from churn_pipeline.lib.identifiers import qualified, validate_identifier

SQL_ROOT = Path(__file__).resolve().parents[2] / "dbt_like_sql"
LAYER_SCHEMAS = {"staging": "staging", "intermediate": "staging", "marts": "marts"}
SCHEMAS = ("raw", "staging", "marts")

_REFERENCE = re.compile(r"\b(raw|staging|marts)\.([a-z_][a-z0-9_]*)\b")
_PARAMETER = re.compile(r"\$([a-z_][a-z0-9_]*)")
_LINE_COMMENT = re.compile(r"--[^\n]*")
_STRING = re.compile(r"'(?:[^']|'')*'")
_MATERIALIZED = re.compile(r"^--\s*materialized:\s*(\w+)\s*$")
MATERIALIZATIONS = ("table", "view")
_MACRO = re.compile(r"\bmacro\s+([a-z_][a-z0-9_]*)\s*\(", re.IGNORECASE)


@dataclass(frozen=True)
class SqlModel:
    name: str
    layer: str
    path: Path
    sql: str
    references: frozenset[tuple[str, str]]
    parameters: frozenset[str]
    materialized: str = "table"

    @property
    def schema(self) -> str:
        return LAYER_SCHEMAS[self.layer]

    @property
    def table(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def description(self) -> str:
        """The file's leading comment, which says what the table is."""
        return " ".join(
            line.removeprefix("--").strip() for line in _leading_comments(self.sql) if not _MATERIALIZED.match(line)
        )


def _leading_comments(sql: str) -> list[str]:
    lines = []
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return lines


def _code_only(sql: str) -> str:
    return _STRING.sub("''", _LINE_COMMENT.sub("", sql))


def parse_model(path: Path, layer: str) -> SqlModel:
    name = validate_identifier(path.stem, f"model file name {path.name}")
    sql = path.read_text(encoding="utf-8")
    code = _code_only(sql)
    references = frozenset(
        (schema, table) for schema, table in _REFERENCE.findall(code) if (schema, table) != (LAYER_SCHEMAS[layer], name)
    )
    parameters = frozenset(_PARAMETER.findall(code))
    declared = [match.group(1) for line in _leading_comments(sql) if (match := _MATERIALIZED.match(line))]
    materialized = declared[-1] if declared else "table"
    if materialized not in MATERIALIZATIONS:
        raise ValueError(f"{path.name}: materialized must be one of {', '.join(MATERIALIZATIONS)}, not {materialized!r}")
    if materialized == "view" and parameters:
        raise ValueError(f"{path.name}: a view cannot take parameters ({', '.join(sorted(parameters))}); make it a table")
    if materialized == "view":
        # analysts' read-only connections have none of the session macros a view would call
        called = sorted(macro for macro in macro_names() if re.search(rf"\b{macro}\s*\(", code))
        if called:
            raise ValueError(f"{path.name}: a view cannot call session macros ({', '.join(called)}); make it a table")
    return SqlModel(name, layer, path, sql.strip().rstrip(";"), references, parameters, materialized)


@cache
def load_models(root: Path = SQL_ROOT) -> tuple[SqlModel, ...]:
    models = [
        parse_model(path, layer)
        for layer in LAYER_SCHEMAS
        for path in sorted((root / layer).glob("*.sql"))
    ]
    names = [model.name for model in models]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ValueError(f"dbt_like_sql: model names must be unique, repeated: {sorted(duplicates)}")
    return tuple(models)


@cache
def macros_sql(root: Path = SQL_ROOT) -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted((root / "macros").glob("*.sql")))


@cache
def macro_names(root: Path = SQL_ROOT) -> frozenset[str]:
    """The temp macros defined in dbt_like_sql/macros/, which exist only in the pipeline's connections."""
    return frozenset(_MACRO.findall(_code_only(macros_sql(root))))


def prepare_connection(conn: duckdb.DuckDBPyConnection) -> None:
    """Schemas and the temp macros every model may use."""
    for schema in SCHEMAS:
        conn.execute(f"create schema if not exists {schema}")
    conn.execute(macros_sql())
    # an ASOF join whose left side DuckDB underestimates (13 rows estimated, 23k real) would run
    # as a nested loop: 2 s instead of 0.08 s on 10k customers
    conn.execute("set asof_loop_join_threshold = 0")


def run_model(conn: duckdb.DuckDBPyConnection, model: SqlModel, parameters: dict[str, object]) -> int | None:
    """(Re)build the model's table or view from its select; returns the table's row count, and
    None for a view: counting a view runs its whole query (1.9 s for `int_subscription_events`
    at medium, a join of two 8.3M-row tables), which is what a view is there to avoid."""
    missing = model.parameters - parameters.keys()
    if missing:
        raise KeyError(f"{model.path.name}: no value for parameter(s) {sorted(missing)}")
    prepare_connection(conn)
    bound = {name: parameters[name] for name in model.parameters}
    # a model that changed kind (table <-> view) replaces the old object
    existing = scalar(
        conn,
        "select table_type from information_schema.tables where table_schema = $schema and table_name = $name",
        {"schema": model.schema, "name": model.name},
    )
    if existing == "VIEW" and model.materialized == "table":
        conn.execute(f"drop view {model.table}")
    elif existing == "BASE TABLE" and model.materialized == "view":
        conn.execute(f"drop table {model.table}")
    if model.materialized == "view":
        conn.execute(f"create or replace view {model.table} as {model.sql}")
        return None
    conn.execute(f"create or replace table {model.table} as {model.sql}", bound)
    return scalar(conn, f"select count(*) from {model.table}")


def topological_order(models: tuple[SqlModel, ...]) -> list[SqlModel]:
    by_table = {(model.schema, model.name): model for model in models}
    ordered: list[SqlModel] = []
    seen: set[str] = set()

    def visit(model: SqlModel, stack: tuple[str, ...]) -> None:
        if model.name in seen:
            return
        if model.name in stack:
            raise ValueError(f"dbt_like_sql: dependency cycle {' -> '.join(stack + (model.name,))}")
        for reference in sorted(model.references):
            if reference in by_table:
                visit(by_table[reference], stack + (model.name,))
        seen.add(model.name)
        ordered.append(model)

    for model in models:
        visit(model, ())
    return ordered
