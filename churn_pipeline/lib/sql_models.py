"""The SQL model layer: one `select` per file in dbt_like_sql/<layer>/, file name = table name.

Dependencies are read from the SQL itself: every `raw.x`, `staging.x` or `marts.x` it
mentions. Values reach the SQL only as bound named parameters (`$timezone`, ...). A model is
built as a table unless a leading comment line says otherwise (as dbt's `materialized=`):
- `-- materialized: view`: for a cheap filter over a table, which readers then scan only for
  the columns they use. A view can take no parameters and no temp macros.
- `-- materialized: incremental`, with `-- incremental_source: raw.x` and
  `-- unique_key: a, b`: rebuilt in full the first time, then only for the delivery months of
  its source that changed (see `incremental.py`). Its SQL marks what the append reads with
  dbt's `{% if is_incremental() %} ... {% else %} ... {% endif %}`, gets the months in
  `$append_months` and names its own table `{{ this }}`.
A table or incremental model may end with a `-- post_hook:` line (dbt's `post_hook`): the statement
after it runs on `{{ this }}` after every build, rebuild or append, in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

from churn_pipeline.lib import incremental, ingest
from churn_pipeline.lib.duck import scalar, transaction
from churn_pipeline.lib.identifiers import qualified, validate_identifier

SQL_ROOT = Path(__file__).resolve().parents[2] / "dbt_like_sql"
LAYER_SCHEMAS = {"staging": "staging", "intermediate": "staging", "marts": "marts"}
SCHEMAS = ("raw", "staging", "marts")

_REFERENCE = re.compile(r"\b(raw|staging|marts)\.([a-z_][a-z0-9_]*)\b")
_PARAMETER = re.compile(r"\$([a-z_][a-z0-9_]*)")
_LINE_COMMENT = re.compile(r"--[^\n]*")
_STRING = re.compile(r"'(?:[^']|'')*'")
_DIRECTIVE = re.compile(r"^--\s*(materialized|incremental_source|unique_key):\s*(.*?)\s*$")
MATERIALIZATIONS = ("table", "view", "incremental")
# dbt's block, without the rest of Jinja: `{% if is_incremental() %} a {% else %} b {% endif %}`
_INCREMENTAL_BLOCK = re.compile(
    r"\{%-?\s*if\s+is_incremental\(\)\s*-?%\}(.*?)(?:\{%-?\s*else\s*-?%\}(.*?))?\{%-?\s*endif\s*-?%\}", re.DOTALL
)
APPEND_MONTHS = "append_months"
_POST_HOOK = re.compile(r"^--\s*post_hook:[^\n]*$", re.MULTILINE)
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
    incremental_source: tuple[str, str] | None = None
    unique_key: tuple[str, ...] = ()
    post_hook: str = ""

    @property
    def schema(self) -> str:
        return LAYER_SCHEMAS[self.layer]

    @property
    def table(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def description(self) -> str:
        """The file's leading comment, which says what the table is."""
        return " ".join(line.removeprefix("--").strip() for line in _leading_comments(self.sql) if not _DIRECTIVE.match(line))

    def render(self, incremental: bool = False) -> str:
        """The SQL to run: for an append (`incremental`) or for a full build."""
        sql = _INCREMENTAL_BLOCK.sub(lambda m: m.group(1) if incremental else (m.group(2) or ""), self.sql)
        return sql.replace("{{ this }}", self.table)

    def render_post_hook(self) -> str:
        return self.post_hook.replace("{{ this }}", self.table)

    @property
    def bound_parameters(self) -> frozenset[str]:
        """The parameters the pipeline's settings must supply (`$append_months` comes from the runner)."""
        return self.parameters - {APPEND_MONTHS}


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
    text = path.read_text(encoding="utf-8")
    sql, post_hook = _split_post_hook(text)
    code = _code_only(text)
    references = frozenset(
        (schema, table) for schema, table in _REFERENCE.findall(code) if (schema, table) != (LAYER_SCHEMAS[layer], name)
    )
    parameters = frozenset(_PARAMETER.findall(code))
    directives = {match.group(1): match.group(2) for line in _leading_comments(sql) if (match := _DIRECTIVE.match(line))}
    materialized = directives.get("materialized", "table")
    if materialized not in MATERIALIZATIONS:
        raise ValueError(f"{path.name}: materialized must be one of {', '.join(MATERIALIZATIONS)}, not {materialized!r}")
    if materialized == "incremental":
        source, unique_key = _incremental_directives(path, directives, references, code)
        return SqlModel(name, layer, path, sql, references, parameters, materialized, source, unique_key, post_hook)
    appends = _INCREMENTAL_BLOCK.search(code) or APPEND_MONTHS in parameters
    if appends or directives.keys() & {"incremental_source", "unique_key"}:
        raise ValueError(
            f"{path.name}: is_incremental(), $append_months, incremental_source and unique_key need `-- materialized: incremental`"
        )
    if materialized == "view" and post_hook:
        raise ValueError(f"{path.name}: a view cannot have a post_hook; make it a table")
    if materialized == "view" and parameters:
        raise ValueError(f"{path.name}: a view cannot take parameters ({', '.join(sorted(parameters))}); make it a table")
    if materialized == "view":
        # analysts' read-only connections have none of the session macros a view would call
        called = sorted(macro for macro in macro_names() if re.search(rf"\b{macro}\s*\(", code))
        if called:
            raise ValueError(f"{path.name}: a view cannot call session macros ({', '.join(called)}); make it a table")
    return SqlModel(name, layer, path, sql, references, parameters, materialized, post_hook=post_hook)


def _split_post_hook(text: str) -> tuple[str, str]:
    """(the model's select, the statement after its `-- post_hook:` line, or "")."""
    match = _POST_HOOK.search(text)
    if not match:
        return text.strip().rstrip(";"), ""
    return text[: match.start()].strip().rstrip(";"), text[match.end() :].strip().rstrip(";")


def _parameters_of(sql: str, bound: dict[str, object]) -> dict[str, object]:
    """The bound values one statement uses (DuckDB refuses values a statement does not name)."""
    used = set(_PARAMETER.findall(_code_only(sql)))
    return {name: value for name, value in bound.items() if name in used}


def _incremental_directives(
    path: Path, directives: dict[str, str], references: frozenset[tuple[str, str]], code: str
) -> tuple[tuple[str, str], tuple[str, ...]]:
    source = directives.get("incremental_source", "")
    match = _REFERENCE.fullmatch(source)
    if not match or (match.group(1), match.group(2)) not in references:
        raise ValueError(
            f"{path.name}: an incremental model needs `-- incremental_source: <schema>.<table>`, a table it reads (got {source!r})"
        )
    columns = [column.strip() for column in directives.get("unique_key", "").split(",") if column.strip()]
    unique_key = tuple(validate_identifier(column, f"{path.name}: unique_key column") for column in columns)
    if not unique_key:
        raise ValueError(f"{path.name}: an incremental model needs `-- unique_key: <column>[, <column>]`, which identifies a row")
    if not _INCREMENTAL_BLOCK.search(code):
        raise ValueError(f"{path.name}: an incremental model marks what an append reads with {{% if is_incremental() %}}")
    return (match.group(1), match.group(2)), unique_key


@cache
def load_models(root: Path = SQL_ROOT) -> tuple[SqlModel, ...]:
    models = [parse_model(path, layer) for layer in LAYER_SCHEMAS for path in sorted((root / layer).glob("*.sql"))]
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
    incremental.ensure_bookkeeping(conn)


@dataclass(frozen=True)
class ModelBuild:
    rows: int | None  # None for a view: counting one runs its whole query
    how: str  # "table", "view", or what an incremental model did ("appended 2024-06", ...)


def run_model(
    conn: duckdb.DuckDBPyConnection, model: SqlModel, parameters: dict[str, object], full_refresh: bool = False
) -> ModelBuild:
    """(Re)build the model's table or view from its select, or bring an incremental table up to date
    (`full_refresh`: rebuild it).

    A view is not counted: counting one runs its whole query, which is what a view is there to avoid."""
    missing = model.bound_parameters - parameters.keys()
    if missing:
        raise KeyError(f"{model.path.name}: no value for parameter(s) {sorted(missing)}")
    prepare_connection(conn)
    bound = {name: parameters[name] for name in model.bound_parameters}
    # a model that changed kind (table <-> view) replaces the old object
    existing = scalar(
        conn,
        "select table_type from information_schema.tables where table_schema = $schema and table_name = $name",
        {"schema": model.schema, "name": model.name},
    )
    if existing == "VIEW" and model.materialized != "view":
        conn.execute(f"drop view {model.table}")
    elif existing == "BASE TABLE" and model.materialized == "view":
        conn.execute(f"drop table {model.table}")
    if model.materialized == "view":
        conn.execute(f"create or replace view {model.table} as {model.sql}")
        return ModelBuild(None, "view")
    if model.materialized == "incremental":
        return _run_incremental(conn, model, bound, table_exists=existing == "BASE TABLE", full_refresh=full_refresh)
    with transaction(conn):
        conn.execute(f"create or replace table {model.table} as {model.sql}", _parameters_of(model.sql, bound))
        _run_post_hook(conn, model, bound)
        _record_scans(conn, model, None)
    return ModelBuild(_row_count(conn, model), "table")


def _record_scans(conn: duckdb.DuckDBPyConnection, model: SqlModel, months: tuple[str, ...] | None) -> None:
    """What reading the raw sources' files told (unreadable records, rows per file), for a staging
    model, which reads each file the build needed once."""
    if model.layer == "staging":
        for schema, table in sorted(model.references):
            if schema == "raw":
                ingest.record_scan(conn, table, model.table, months)


def _run_post_hook(conn: duckdb.DuckDBPyConnection, model: SqlModel, bound: dict[str, object]) -> None:
    if model.post_hook:
        statement = model.render_post_hook()
        conn.execute(statement, _parameters_of(statement, bound))


def _run_incremental(
    conn: duckdb.DuckDBPyConnection, model: SqlModel, bound: dict[str, object], table_exists: bool, full_refresh: bool
) -> ModelBuild:
    full_sql, append_sql = model.render(), model.render(incremental=True)
    source_schema, source_table = model.incremental_source
    others = sorted(qualified(*ref) for ref in model.references if ref != model.incremental_source)
    key = incremental.build_key(
        macros_sql() + full_sql + append_sql + model.post_hook, bound, incremental.content_key(conn, others)
    )
    inputs = incremental.input_versions(conn, source_schema, source_table)
    previous = incremental.builds(conn, model.table)
    reads_files = source_schema == "raw" and ingest.is_file_view(conn, source_table)
    plan = incremental.plan_build(table_exists, inputs, previous, key, full_refresh, reads_files)
    if plan.kind != "unchanged":
        with transaction(conn):
            if plan.kind == "rebuild":
                conn.execute(f"create or replace table {model.table} as {full_sql}", _parameters_of(full_sql, bound))
                incremental.check_columns(conn, model.table, model.path.name, model.unique_key)
                _run_post_hook(conn, model, bound)
                _record_scans(conn, model, None)
                touched = None
            else:
                parameters = _parameters_of(append_sql, {**bound, APPEND_MONTHS: list(plan.months)})
                touched = incremental.append(
                    conn,
                    model.table,
                    append_sql,
                    parameters,
                    plan.months,
                    model.unique_key,
                    after_insert=lambda: _run_post_hook(conn, model, bound),
                )
                _record_scans(conn, model, plan.months)
            incremental.record_build(conn, model.table, inputs, previous, touched, key)
    return ModelBuild(_row_count(conn, model), plan.describe())


def _row_count(conn: duckdb.DuckDBPyConnection, model: SqlModel) -> int:
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
