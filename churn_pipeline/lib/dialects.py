"""One set of models, two engines. DuckDB runs dbt_like_sql/ as written. For Spark, a model is
parsed with sqlglot, its macro calls are inlined (dbt's adapter dispatch: the body in
`macros/spark/` where one is written for Spark, else the DuckDB body), the rewrites below are
applied, and sqlglot prints it as Spark SQL. docs/scale_out.md lists the rewrites and why.

Macros are inlined rather than registered as Spark SQL functions: DuckDB's macros are untyped,
and a Spark function needs the type of every parameter and of its result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sqlglot
from sqlglot import exp

SQL_ROOT = Path(__file__).resolve().parents[2] / "dbt_like_sql"
_MACRO = re.compile(
    r"create\s+or\s+replace\s+temp\s+macro\s+([a-z_][a-z0-9_]*)\s*\(([^)]*)\)\s+as\s+(table\s+)?(.*?);\s*(?=create\s|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_LINE_COMMENT = re.compile(r"--[^\n]*")


@dataclass(frozen=True)
class Macro:
    name: str
    parameters: tuple[str, ...]
    body: exp.Expression
    is_table: bool


def parse_macros(text: str, dialect: str) -> dict[str, Macro]:
    macros = {}
    for match in _MACRO.finditer(_LINE_COMMENT.sub("", text)):
        name = match.group(1).lower()
        parameters = tuple(p.strip().lower() for p in match.group(2).split(",") if p.strip())
        body = sqlglot.parse_one(match.group(4), read=dialect)
        macros[name] = Macro(name, parameters, body, bool(match.group(3)))
    return macros


@cache
def spark_macros(root: Path = SQL_ROOT) -> dict[str, Macro]:
    """Every macro as Spark inlines it: the Spark body where macros/spark/ has one, else DuckDB's."""
    macros: dict[str, Macro] = {}
    for path in sorted((root / "macros").glob("*.sql")):
        macros.update(parse_macros(path.read_text(encoding="utf-8"), "duckdb"))
    for path in sorted((root / "macros" / "spark").glob("*.sql")):
        overrides = parse_macros(path.read_text(encoding="utf-8"), "spark")
        unknown = sorted(overrides.keys() - macros.keys())
        if unknown:
            raise ValueError(f"{path.name}: Spark bodies for macros DuckDB does not define: {', '.join(unknown)}")
        macros.update(overrides)
    return macros


def _call_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return None


def _call_arguments(node: exp.Func) -> list[exp.Expression]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    arguments: list[exp.Expression] = []
    for key in node.arg_types:
        value = node.args.get(key)
        if isinstance(value, list):
            arguments.extend(value)
        elif value is not None:
            arguments.append(value)
    return arguments


def _substitute(body: exp.Expression, values: dict[str, exp.Expression]) -> exp.Expression:
    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name.lower() in values:
            return values[node.name.lower()].copy()
        return node

    return body.copy().transform(replace)


def inline_macros(tree: exp.Expression, macros: dict[str, Macro]) -> exp.Expression:
    """Every scalar macro call replaced by its body, its parameters by the call's arguments."""

    def replace(node: exp.Expression) -> exp.Expression:
        name = _call_name(node)
        macro = macros.get(name) if name else None
        if macro is None or macro.is_table:
            return node
        arguments = _call_arguments(node)
        if len(arguments) != len(macro.parameters):
            raise ValueError(f"macro {macro.name} takes {len(macro.parameters)} arguments, called with {len(arguments)}")
        body = inline_macros(_substitute(macro.body, dict(zip(macro.parameters, arguments, strict=True))), macros)
        return exp.Paren(this=body) if not isinstance(body, (exp.Paren, exp.Column, exp.Literal)) else body

    return tree.transform(replace)


# The rewrites: where DuckDB and Spark spell the same thing differently, or where sqlglot prints
# DuckDB's construct unchanged and Spark would refuse it or read it otherwise.


def _drop_cte_hints(node: exp.Expression) -> exp.Expression:
    """`as [not] materialized`: a DuckDB planner hint; Spark plans every CTE itself."""
    if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
        node.set("materialized", None)
    return node


def _one_based_element(node: exp.Expression) -> exp.Expression:
    """`list[i]` counts from 1 in DuckDB and from 0 in Spark; `element_at` counts from 1 in both.
    (sqlglot has already made a literal index count from 0, and left any other as written.)"""
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
        index = node.expressions[0].copy()
        if isinstance(index, exp.Literal) and index.is_int:
            index = exp.Literal.number(int(index.name) + 1)
        return exp.Anonymous(this="element_at", expressions=[node.this.copy(), index])
    return node


def _byte_length(node: exp.Expression) -> exp.Expression:
    """DuckDB's strlen counts bytes, as Spark's octet_length does."""
    if _call_name(node) == "strlen":
        return exp.Anonymous(this="octet_length", expressions=_call_arguments(node))
    return node


def _list_position(node: exp.Expression) -> exp.Expression:
    """DuckDB's list_position is null where Spark's array_position is 0 (not found)."""
    if _call_name(node) == "list_position":
        array, value = _call_arguments(node)
        position = exp.Anonymous(this="array_position", expressions=[array.copy(), value.copy()])
        return exp.Nullif(this=position, expression=exp.Literal.number(0))
    return node


def _epoch_us(node: exp.Expression) -> exp.Expression:
    if _call_name(node) == "epoch_us":
        return exp.Anonymous(this="unix_micros", expressions=_call_arguments(node))
    return node


def _wide_integer(node: exp.Expression) -> exp.Expression:
    """DuckDB's 128-bit integer is Spark's widest decimal."""
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.INT128:
        return exp.DataType.build("decimal(38, 0)")
    return node


def _json_keeps_nulls(node: exp.Expression) -> exp.Expression:
    """DuckDB's to_json writes a null field as null; Spark leaves it out unless told."""
    if _call_name(node) in ("to_json", "json_format") and len(_call_arguments(node)) == 1:
        options = exp.Anonymous(this="map", expressions=[exp.Literal.string("ignoreNullFields"), exp.Literal.string("false")])
        return exp.Anonymous(this="to_json", expressions=[_call_arguments(node)[0].copy(), options])
    return node


def _double_division(node: exp.Expression) -> exp.Expression:
    """`x / 86400.0` is a double in DuckDB, a decimal in Spark: the literal becomes a double."""
    if isinstance(node, exp.Div) and isinstance(node.expression, exp.Literal) and "." in node.expression.name:
        node.set("expression", exp.Cast(this=node.expression.copy(), to=exp.DataType.build("double")))
    return node


_AGGREGATES = (exp.Count, exp.Sum, exp.Min, exp.Max, exp.Avg, exp.ArgMax, exp.ArgMin, exp.AnyValue)


def _window_filter(node: exp.Expression) -> exp.Expression:
    """`agg(x) filter (where c) over w`: Spark takes FILTER only without OVER, so `agg(case when c then x end)`."""
    if isinstance(node, exp.Window) and isinstance(node.this, exp.Filter):
        aggregate, condition = node.this.this, node.this.expression.this
        if not isinstance(aggregate, _AGGREGATES):
            raise ValueError(f"no Spark rewrite for {aggregate.sql('duckdb')} filter (...) over (...)")
        aggregate = aggregate.copy()
        argument = aggregate.this
        if isinstance(aggregate, exp.Count) and (argument is None or isinstance(argument, exp.Star)):
            argument = exp.Literal.number(1)
        aggregate.set("this", exp.Case(ifs=[exp.If(this=condition.copy(), true=argument.copy())]))
        node.set("this", aggregate)
    return node


def _named_windows(node: exp.Expression) -> exp.Expression:
    """A named window built on another (`before as (lifecycle_order rows between ...)`): Spark
    takes neither that nor a frame added to a named window in OVER, so every window is written out."""
    if not isinstance(node, exp.Select) or not node.args.get("windows"):
        return node
    definitions = {window.name: window for window in node.args["windows"]}

    def resolve(name: str, seen: tuple[str, ...] = ()) -> dict:
        if name in seen or name not in definitions:
            raise ValueError(f"window {name} is not defined (or is defined in a cycle)")
        window = definitions[name]
        base = resolve(window.alias, seen + (name,)) if window.alias else {}
        parts = {key: window.args.get(key) for key in ("partition_by", "order", "spec") if window.args.get(key)}
        return {**base, **parts}

    for window in list(node.find_all(exp.Window)):
        if window.parent_select is not node or window in node.args["windows"] or not window.alias:
            continue
        for key, value in resolve(window.alias).items():
            if not window.args.get(key):
                window.set(key, value.copy() if isinstance(value, exp.Expression) else [v.copy() for v in value])
        window.set("alias", None)
    node.set("windows", None)
    return node


def _ordered_first(node: exp.Expression) -> exp.Expression:
    """`first(x order by a, b)`: Spark's first takes no ORDER BY; min_by(x, struct(a, b)) is the
    same value when a and b are never null, as every such key here is."""
    if isinstance(node, exp.First) and isinstance(node.this, exp.Order):
        order = node.this
        keys = [ordered.this.copy() for ordered in order.expressions]
        if any(ordered.args.get("desc") for ordered in order.expressions):
            raise ValueError(f"no Spark rewrite for a descending {node.sql('duckdb')}")
        key = keys[0] if len(keys) == 1 else exp.Struct(expressions=keys)
        return exp.Anonymous(this="min_by", expressions=[order.this.copy(), key])
    return node


def _ordered_mode(node: exp.Expression) -> exp.Expression:
    """`mode(x order by x)` takes the smallest of tied values; Spark's mode(x, true) does too."""
    if _call_name(node) == "mode" and isinstance(node.this, exp.Order):
        order = node.this
        if [o.this.sql() for o in order.expressions] != [order.this.sql()] or order.expressions[0].args.get("desc"):
            raise ValueError(f"no Spark rewrite for {node.sql('duckdb')}")
        return exp.Anonymous(this="mode", expressions=[order.this.copy(), exp.true()])
    return node


def _interval_constructors(node: exp.Expression) -> exp.Expression:
    """DuckDB's to_months(n) and to_days(n); days are exact (the session time zone is UTC)."""
    if _call_name(node) == "to_months":
        return exp.Anonymous(this="make_ym_interval", expressions=[exp.Literal.number(0), *_call_arguments(node)])
    if _call_name(node) == "to_days":
        return exp.Anonymous(this="make_dt_interval", expressions=_call_arguments(node))
    return node


def _cast_inside_explode(node: exp.Expression) -> exp.Expression:
    """`unnest(list)::date`: Spark takes a generator only at the top of a select item, so the list
    is cast instead, to a list of dates."""
    if isinstance(node, exp.Cast) and isinstance(node.this, (exp.Explode, exp.Unnest)):
        generator = node.this.copy()
        inner = generator.this if isinstance(generator, exp.Explode) else generator.expressions[0]
        element = node.args["to"].copy()
        generator.replace(generator)
        cast = exp.Cast(this=inner.copy(), to=exp.DataType(this=exp.DataType.Type.ARRAY, expressions=[element], nested=True))
        return exp.Explode(this=cast)
    return node


def _raw_session_views(node: exp.Expression) -> exp.Expression:
    """raw.<table> is a session view of the delivery files on Spark (lib/spark_ingest.py), and
    Spark's session views have no schema: `raw__<table>`."""
    if isinstance(node, exp.Table) and node.db == "raw" and not node.catalog:
        # keeps the name the model's columns are qualified with
        alias = node.args["alias"].copy() if node.args.get("alias") else exp.TableAlias(this=exp.to_identifier(node.name))
        renamed = exp.to_table(f"raw__{node.name}")
        renamed.set("alias", alias)
        return renamed
    return node


REWRITES = (
    _raw_session_views,
    _drop_cte_hints,
    _named_windows,
    _ordered_first,
    _ordered_mode,
    _interval_constructors,
    _cast_inside_explode,
    _one_based_element,
    _byte_length,
    _list_position,
    _epoch_us,
    _wide_integer,
    _json_keeps_nulls,
    _double_division,
    _window_filter,
)


def to_spark(sql: str, macros: dict[str, Macro] | None = None) -> str:
    """A model's DuckDB select (rendered, `{{ this }}` filled in) as Spark SQL; `$name` parameters
    become Spark's `:name` markers, bound the same way."""
    tree = inline_macros(sqlglot.parse_one(sql, read="duckdb"), spark_macros() if macros is None else macros)
    for rewrite in REWRITES:
        tree = tree.transform(rewrite)
    return tree.sql(dialect="spark")


def _inline_table_macros(tree: exp.Expression, macros: dict[str, Macro]) -> exp.Expression:
    """`from recarried_values('schema.table') as r`: the macro's query, its `query_table(p)` reading
    the table named by the argument, as a subquery."""

    def replace(node: exp.Expression) -> exp.Expression:
        if not (isinstance(node, exp.Table) and isinstance(node.this, exp.Anonymous)):
            return node
        macro = macros.get(node.this.name.lower())
        if macro is None or not macro.is_table:
            return node
        arguments = dict(zip(macro.parameters, node.this.expressions, strict=True))

        def read_table(inner: exp.Expression) -> exp.Expression:
            if (
                isinstance(inner, exp.Table)
                and isinstance(inner.this, exp.Anonymous)
                and inner.this.name.lower() == "query_table"
            ):
                (parameter,) = inner.this.expressions
                table = exp.to_table(arguments[parameter.name.lower()].name)
                if inner.alias:
                    table.set("alias", inner.args["alias"].copy())
                return table
            return inner

        query = macro.body.copy().transform(read_table)
        return exp.Subquery(this=query, alias=node.args.get("alias").copy() if node.args.get("alias") else None)

    return tree.transform(replace)


def post_hook_to_spark(statement: str, columns: list[str]) -> str:
    """A post hook's `update t as a set c = e, ... from source as s where a.k = s.k` as the select
    that gives the updated table (Spark cannot update a Parquet table): every row of t, with the
    set columns taken from the update where a source row matches. `columns`: t's, in order."""
    macros = spark_macros()
    update = sqlglot.parse_one(statement, read="duckdb")
    if not isinstance(update, exp.Update) or not update.args.get("from_"):
        raise ValueError("a post hook runs on Spark only as `update {{ this }} as t set ... from ... where t.k = s.k`")
    target = update.this.alias_or_name
    built_table = exp.table_name(update.this)
    source = update.args["from_"].this
    keys = (
        list(update.args["where"].this.flatten())
        if isinstance(update.args["where"].this, exp.And)
        else [update.args["where"].this]
    )
    if not all(isinstance(k, exp.EQ) and {k.this.table, k.expression.table} == {target, source.alias} for k in keys):
        raise ValueError("a post hook's where must match its table and its source on equal columns")
    matched_key = next(side for side in (keys[0].this, keys[0].expression) if side.table == source.alias)
    matched = exp.Not(this=exp.Is(this=matched_key.copy(), expression=exp.Null()))
    assignments = {eq.this.name: eq.expression for eq in update.expressions}
    items: list[exp.Expression] = []
    for column in columns:
        current = exp.column(column, table=target)
        if column in assignments:
            value = exp.Case(ifs=[exp.If(this=matched.copy(), true=assignments[column].copy())], default=current)
            items.append(exp.alias_(value, column))
        else:
            items.append(current)
    join = exp.Join(this=source.copy(), side="LEFT", on=update.args["where"].this.copy())
    select = exp.Select(expressions=items).from_(exp.to_table(built_table).as_(target))
    select.append("joins", join)
    tree = inline_macros(_inline_table_macros(select, macros), macros)
    for rewrite in REWRITES:
        tree = tree.transform(rewrite)
    return tree.sql(dialect="spark")
