"""Incremental models: rebuild once, then redo only the delivery months that changed.

Every delivery month of a raw source has a version (`raw.delivery_versions`): a hash of the
files the month was delivered in (name, size, checksum), so registering unchanged files again
keeps it and any change to them makes a new one. Top-level files count as
one more "month", written `''`. An incremental model records, per month, the input version
it was built from and a version of its own output (`staging.incremental_builds`), which the
models that read it use in turn, and a build key: a hash of its SQL, the macros, the bound
settings, DuckDB's version and the content of every other table it reads.

A run then
- rebuilds the table when asked (`--full-refresh`), when it is new, when the build key changed
  (SQL, settings, fx rates...), when its source has no versions (loaded through an adapter, or
  by older code) or when every month changed;
- does nothing when no month changed;
- otherwise appends the changed months: it runs the model's `is_incremental()` SQL with
  `$append_months`, deletes the table's rows of those months and the rows whose unique key the
  new rows carry (a model may recompute rows of other months), and inserts the new rows, in one
  transaction.
A model that reads a raw view of the delivery files (staging) cannot fetch rows of other months
again as text, so its appends read every month from the first changed one on and the top-level
files, and a change to the top-level files rebuilds it: no row it does not read again changes.
The model's SQL must make that equal to a rebuild; `tests/test_incremental.py` checks it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import duckdb

from churn_pipeline.lib.duck import rows

TOP_LEVEL = ""  # the "month" of files directly in the raw directory

DELIVERY_VERSIONS = "raw.delivery_versions"
DELIVERY_VERSIONS_COLUMNS = "source varchar, delivery_month varchar, version varchar"
BUILDS = "staging.incremental_builds"
BUILDS_COLUMNS = "model varchar, delivery_month varchar, input_version varchar, output_version varchar, build_key varchar"


@dataclass(frozen=True)
class BuildPlan:
    kind: str  # "rebuild", "append" or "unchanged"
    months: tuple[str, ...] = ()
    reason: str = ""

    def describe(self) -> str:
        if self.kind == "append":
            shown = ", ".join(month or "top-level files" for month in self.months)
            return f"appended {shown}"
        return f"{self.kind}: {self.reason}" if self.reason else self.kind


@dataclass(frozen=True)
class MonthBuild:
    input_version: str
    output_version: str
    build_key: str


def month_version(files: Iterable[tuple[str, int, int, int, int]]) -> str:
    """A delivery month's version from its files: (name, size, mtime_ns, rows loaded, rows rejected)."""
    return hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()[:32]


def plan_build(
    table_exists: bool,
    inputs: Mapping[str, str],
    built: Mapping[str, MonthBuild],
    build_key: str,
    full_refresh: bool = False,
    reads_files: bool = False,
) -> BuildPlan:
    """What a run must do, from the source's month versions and what the table was built from.
    `reads_files`: the source is a raw view of the delivery files (see the module's docstring)."""
    if full_refresh:
        return BuildPlan("rebuild", reason="--full-refresh")
    if not table_exists or not built:
        return BuildPlan("rebuild", reason="first build")
    if not inputs:
        return BuildPlan("rebuild", reason="the source has no delivery versions (an adapter, or loaded by older code)")
    if any(month.build_key != build_key for month in built.values()):
        return BuildPlan("rebuild", reason="its SQL, settings or reference tables changed")
    every = sorted(inputs.keys() | built.keys())
    changed = [
        month for month in every if month not in built or month not in inputs or built[month].input_version != inputs[month]
    ]
    if not changed:
        return BuildPlan("unchanged")
    if reads_files:
        if TOP_LEVEL in changed:
            return BuildPlan("rebuild", reason="the top-level files changed")
        # A changed month can change which copy of a repeated id is loaded only in later months
        # and in top-level rows (which any month can precede): those are read again too.
        changed = [month for month in every if month >= changed[0] or month == TOP_LEVEL]
    if changed == every:
        return BuildPlan("rebuild", reason="every delivery month changed")
    return BuildPlan("append", tuple(changed))


def ensure_bookkeeping(conn: duckdb.DuckDBPyConnection) -> None:
    """The two bookkeeping tables; called where the loader and the model runner set up their schemas."""
    conn.execute("create schema if not exists raw")
    conn.execute(f"create table if not exists {DELIVERY_VERSIONS} ({DELIVERY_VERSIONS_COLUMNS})")
    conn.execute("create schema if not exists staging")
    conn.execute(f"create table if not exists {BUILDS} ({BUILDS_COLUMNS})")


def record_delivery_versions(
    conn: duckdb.DuckDBPyConnection, source: str, versions: Mapping[str, str], months: tuple[str, ...] | None
) -> None:
    """Replace the source's versions of the months a load covered (every month when `months` is None)."""
    if months is None:
        conn.execute(f"delete from {DELIVERY_VERSIONS} where source = $source", {"source": source})
    else:
        conn.execute(
            f"delete from {DELIVERY_VERSIONS} where source = $source and list_contains($months, delivery_month)",
            {"source": source, "months": [*months, TOP_LEVEL]},
        )
    if versions:
        conn.executemany(
            f"insert into {DELIVERY_VERSIONS} values (?, ?, ?)", [(source, month, version) for month, version in versions.items()]
        )


def forget_delivery_versions(conn: duckdb.DuckDBPyConnection, source: str) -> None:
    """A raw table rebuilt without versions (an adapter): its incremental readers must rebuild."""
    conn.execute(f"delete from {DELIVERY_VERSIONS} where source = $source", {"source": source})


def input_versions(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    """The month versions of an incremental model's source: a raw table's loads, or another model's output."""
    if schema == "raw":
        found = rows(conn, f"select delivery_month, version from {DELIVERY_VERSIONS} where source = $t", {"t": table})
    else:
        found = rows(conn, f"select delivery_month, output_version from {BUILDS} where model = $t", {"t": f"{schema}.{table}"})
    return dict(found)


def builds(conn: duckdb.DuckDBPyConnection, model: str) -> dict[str, MonthBuild]:
    found = rows(
        conn, f"select delivery_month, input_version, output_version, build_key from {BUILDS} where model = $m", {"m": model}
    )
    return {month: MonthBuild(*versions) for month, *versions in found}


def content_key(conn: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> list[object]:
    """Row count and an order-free hash of each table's rows (for small reference tables)."""
    return [[table, *map(str, rows(conn, f"select count(*), sum(hash(t)) from {table} as t")[0])] for table in sorted(tables)]


def build_key(sql: str, parameters: Mapping[str, object], content: list[object]) -> str:
    payload = json.dumps([sql, sorted(parameters.items()), duckdb.__version__, content], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def record_build(
    conn: duckdb.DuckDBPyConnection,
    model: str,
    inputs: Mapping[str, str],
    previous: Mapping[str, MonthBuild],
    touched: Iterable[str] | None,
    key: str,
) -> None:
    """Write the model's month versions: a fresh output version for every month it rewrote
    (`touched`; None for a rebuild), the old one for the rest."""
    touched = set(inputs) if touched is None else set(touched)
    records = [
        (
            model,
            month,
            version,
            uuid.uuid4().hex if month in touched or month not in previous else previous[month].output_version,
            key,
        )
        for month, version in sorted(inputs.items())
    ]
    conn.execute(f"delete from {BUILDS} where model = $m", {"m": model})
    if records:
        conn.executemany(f"insert into {BUILDS} values (?, ?, ?, ?, ?)", records)


def append(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    sql: str,
    parameters: Mapping[str, object],
    months: tuple[str, ...],
    unique_key: tuple[str, ...],
    after_insert: Callable[[], None] = lambda: None,
) -> list[str]:
    """Replace the months' rows (and rows sharing a unique key with the new rows) by what `sql` returns,
    then call `after_insert` (the model's post hook, which must change only the new rows' months);
    returns every month the new rows belong to. Runs inside the caller's transaction."""
    conn.execute(f"create or replace temp table incremental_rows as {sql}", dict(parameters))
    conn.execute(
        f"delete from {table} where list_contains($months, coalesce(delivery_month, '{TOP_LEVEL}'))", {"months": list(months)}
    )
    matches = " and ".join(f"{table}.{column} = incremental_rows.{column}" for column in unique_key)
    conn.execute(f"delete from {table} using incremental_rows where {matches}")
    conn.execute(f"insert into {table} by name select * from incremental_rows")
    after_insert()
    touched = [row[0] for row in rows(conn, f"select distinct coalesce(delivery_month, '{TOP_LEVEL}') from incremental_rows")]
    conn.execute("drop table incremental_rows")
    return sorted(set(touched) | set(months))


def check_columns(conn: duckdb.DuckDBPyConnection, table: str, name: str, unique_key: tuple[str, ...]) -> None:
    schema, _, relation = table.partition(".")
    columns = {
        row[0]
        for row in rows(
            conn,
            "select column_name from information_schema.columns where table_schema = $s and table_name = $t",
            {"s": schema, "t": relation},
        )
    }
    missing = [column for column in ("delivery_month", *unique_key) if column not in columns]
    if missing:
        raise ValueError(f"{name}: an incremental model's table needs the column(s) {', '.join(missing)}")
