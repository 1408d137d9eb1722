"""The SQL model layer: materialization declared in the file, tables and views swapped cleanly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from churn_pipeline.lib.sql_models import load_models, macro_names, parse_model, prepare_connection, run_model


def _model(tmp_path: Path, name: str, text: str):
    path = tmp_path / f"{name}.sql"
    path.write_text(text, encoding="utf-8")
    return parse_model(path, "intermediate")


def test_materialization_comes_from_the_leading_comment(tmp_path: Path) -> None:
    view = _model(tmp_path, "v", "-- Big orders.\n-- materialized: view\nselect * from staging.t where amount > 10\n")
    table = _model(tmp_path, "t", "-- Orders.\nselect 1 as amount\n")
    assert (view.materialized, table.materialized) == ("view", "table")
    assert view.description == "Big orders."  # the directive is not part of the description


def test_a_view_with_parameters_or_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"v\.sql: a view cannot take parameters \(as_of\)"):
        _model(tmp_path, "v", "-- x\n-- materialized: view\nselect $as_of as a\n")
    with pytest.raises(ValueError, match=r"m\.sql: a view cannot call session macros \(month_of\); make it a table"):
        _model(tmp_path, "m", "-- x\n-- materialized: view\nselect month_of(occurred_at, 'UTC') from staging.t\n")
    with pytest.raises(ValueError, match=r"w\.sql: materialized must be one of table, view, incremental, not 'ephemeral'"):
        _model(tmp_path, "w", "-- x\n-- materialized: ephemeral\nselect 1 as a\n")


def test_a_model_that_changes_kind_replaces_the_old_object(tmp_path: Path) -> None:
    conn = duckdb.connect()
    conn.execute("create schema staging")
    conn.execute("create table staging.t as select * from range(5) as r(amount)")
    as_table = _model(tmp_path, "big", "-- x\nselect * from staging.t where amount > 2\n")
    as_view = _model(tmp_path, "big", "-- x\n-- materialized: view\nselect * from staging.t where amount > 2\n")

    assert run_model(conn, as_table, {}).rows == 2
    assert run_model(conn, as_view, {}).rows is None  # a view is not counted: that would run its query
    assert conn.execute("select count(*) from staging.big").fetchall()[0][0] == 2
    conn.execute("insert into staging.t values (9)")
    assert conn.execute("select count(*) from staging.big").fetchall()[0][0] == 3  # a view reads its source now
    kind = "select table_type from information_schema.tables where table_name = 'big'"
    assert conn.execute(kind).fetchall() == [("VIEW",)]
    assert run_model(conn, as_table, {}).rows == 3
    assert conn.execute(kind).fetchall() == [("BASE TABLE",)]


def test_a_post_hook_runs_after_the_build_in_the_same_transaction(tmp_path: Path) -> None:
    conn = duckdb.connect()
    conn.execute("create schema staging")
    conn.execute("create table staging.t as select * from range(4) as r(amount)")
    scaled = _model(
        tmp_path,
        "scaled",
        "-- x\nselect amount from staging.t;\n-- post_hook: scale the odd amounts\n"
        "update {{ this }} set amount = amount * $factor where amount % 2 = 1;\n",
    )
    assert "update" not in scaled.sql and scaled.post_hook.startswith("update {{ this }}")
    assert scaled.bound_parameters == {"factor"}  # the select alone takes none: each statement gets its own

    assert run_model(conn, scaled, {"factor": 10}).rows == 4
    assert conn.execute("select amount from staging.scaled order by amount").fetchall() == [(0,), (2,), (10,), (30,)]

    # a failing hook undoes the build with it: the table keeps the last good rows
    conn.execute("insert into staging.t values (5)")
    broken = _model(tmp_path, "scaled", "-- x\nselect amount from staging.t\n-- post_hook: x\nupdate {{ this }} set nope = 1\n")
    with pytest.raises(duckdb.BinderException):
        run_model(conn, broken, {})
    assert conn.execute("select count(*) from staging.scaled").fetchall() == [(4,)]

    with pytest.raises(ValueError, match=r"v\.sql: a view cannot have a post_hook; make it a table"):
        _model(tmp_path, "v", "-- x\n-- materialized: view\nselect 1 as a\n-- post_hook: x\nselect 1\n")


def test_shipped_views_and_the_macros_a_view_may_not_call() -> None:
    views = [model for model in load_models() if model.materialized == "view"]
    assert [model.name for model in views] == [
        "int_mrr_segments",
        "int_observed_subscription_events",
        "int_orders",
        "int_subscription_event_states",
        "int_subscription_events",
    ]
    assert macro_names() == {
        "parse_instant",
        "parse_month",
        "utc_offset",
        "earlier_occurrence",
        "local_instant",
        "clean_text",
        "unless_null_marker",
        "month_of",
        "seconds_between",
        "months_between",
        "parse_number",
        "lifecycle_event_types",
        "lifecycle_key",
        "key_rank",
        "plan_after",
        "mrr_after",
        "mrr_before",
        "lifecycle_movement",
        "recarried_values",
    }


def _macro_connection() -> duckdb.DuckDBPyConnection:
    """A connection set up as the pipeline's: UTC session, the macros."""
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    prepare_connection(conn)
    return conn


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_month_of_around_month_boundaries(zone: str) -> None:
    """month_of's UTC shortcut and ICU's conversion against Python's zoneinfo, one microsecond
    either side of local midnight on the 1st, before 1970 and after, in and out of DST."""
    local = ZoneInfo(zone)
    instants = []
    for year, month in [(1969, 1), (1970, 1), (2024, 3), (2024, 4), (2024, 11), (2025, 1)]:
        midnight = datetime(year, month, 1, tzinfo=local).astimezone(UTC)
        instants += [midnight - timedelta(microseconds=1), midnight, midnight + timedelta(hours=12)]
    expected = [instant.astimezone(local).date().replace(day=1) for instant in instants]
    conn = _macro_connection()
    got = conn.execute(
        "select month_of(instant, $zone) from unnest($instants::timestamptz[]) as t(instant)",
        {"zone": zone, "instants": instants},
    ).fetchall()
    assert [row[0] for row in got] == expected
    assert conn.execute("select month_of(null::timestamptz, $zone)", {"zone": zone}).fetchall() == [(None,)]


def test_seconds_between_counts_second_boundaries_as_date_diff_does() -> None:
    conn = _macro_connection()
    pairs = [
        ("1969-12-31 23:59:59.9+00", "1970-01-01 00:00:00.1+00", 1),  # crosses one boundary, 0.2 s apart
        ("1970-01-01 00:00:00.1+00", "1969-12-31 23:59:59.9+00", -1),
        ("2024-01-01 00:00:00.5+00", "2024-01-01 00:00:01.4+00", 1),
        ("2024-03-10 01:59:59+00", "2024-03-11 01:59:59+00", 86400),
        ("2024-03-10 01:59:59-05", "2024-03-11 01:59:59-04", 86400 - 3600),
    ]
    for a, b, seconds in pairs:
        got = conn.execute(
            "select seconds_between($a::timestamptz, $b::timestamptz), date_diff('second', $a::timestamptz, $b::timestamptz)",
            {"a": a, "b": b},
        ).fetchall()
        assert got == [(seconds, seconds)], (a, b)
    assert conn.execute("select seconds_between(null::timestamptz, now())").fetchall() == [(None,)]


@pytest.mark.parametrize(
    "zone, day",
    [
        ("America/New_York", "2024-03-10"),
        ("America/New_York", "2024-11-03"),
        ("Europe/Berlin", "2024-03-31"),
        ("Europe/Berlin", "2024-10-27"),
        ("Australia/Lord_Howe", "2024-04-07"),
        ("Australia/Lord_Howe", "2024-10-06"),  # clocks move 30 minutes
    ],
)
def test_naive_times_in_a_repeated_or_skipped_hour_follow_one_rule(zone: str, day: str) -> None:
    """Every quarter hour of the transition day, read as a naive time in `zone`, against Python's
    zoneinfo with fold=0 (RFC 5545: a repeated time is its first occurrence, a skipped time takes
    the offset before the gap)."""
    start = datetime.fromisoformat(day)
    local_times = [start + timedelta(minutes=15 * i) for i in range(96)] + [start + timedelta(hours=2, minutes=29, seconds=59)]
    expected = [t.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC) for t in local_times]
    conn = _macro_connection()
    got = conn.execute(
        "select parse_instant(t, $zone) from unnest($times::varchar[]) as u(t)",
        {"zone": zone, "times": [t.isoformat() for t in local_times]},
    ).fetchall()
    assert [row[0] for row in got] == expected
    repeated = [
        t
        for t in local_times
        if t.replace(tzinfo=ZoneInfo(zone), fold=0).utcoffset() != t.replace(tzinfo=ZoneInfo(zone), fold=1).utcoffset()
    ]
    assert repeated  # the day has a repeated or a skipped stretch


def test_the_local_time_rule_in_words() -> None:
    conn = _macro_connection()
    cases = {
        ("2024-11-03 01:39:01", "America/New_York"): "2024-11-03 05:39:01+00",  # first 01:39, EDT
        ("2024-03-10 02:30:00", "America/New_York"): "2024-03-10 07:30:00+00",  # skipped: 03:30 EDT
        ("2024-10-27 02:30:00", "Europe/Berlin"): "2024-10-27 00:30:00+00",  # first 02:30, CEST
        ("2024-03-31 02:30:00", "Europe/Berlin"): "2024-03-31 01:30:00+00",  # skipped: 03:30 CEST
    }
    for (text, zone), instant in cases.items():
        assert conn.execute("select parse_instant($t, $z)::varchar", {"t": text, "z": zone}).fetchone()[0] == instant


def test_the_tests_lifecycle_order_is_the_macros() -> None:
    from helpers import LIFECYCLE_EVENT_TYPES

    assert tuple(_macro_connection().execute("select lifecycle_event_types()").fetchone()[0]) == LIFECYCLE_EVENT_TYPES
