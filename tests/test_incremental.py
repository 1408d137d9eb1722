"""Incremental models: what a run decides to do, and that an append equals a rebuild."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churn_pipeline.lib import ingest, sql_models
from churn_pipeline.lib.generate import GeneratorConfig, generate
from churn_pipeline.lib.incremental import MonthBuild, plan_build
from churn_pipeline.lib.raw_sources import SOURCES
from helpers import LIFECYCLE_EVENT_TYPES, sql_parameters, write_raw

STAGING = ("staging.stg_orders", "staging.stg_subscription_events")
LIFECYCLE = "staging.int_subscription_events_lifecycle"
INCREMENTAL = (*STAGING, LIFECYCLE)


def _did(staging: str, lifecycle: str | None = None, events: str | None = None) -> dict[str, str]:
    """What each incremental model did: `events` for the subscription events' staging and the
    lifecycle when it differs from the orders' staging (with top-level event files, which every
    append of the events reads again)."""
    return {
        "staging.stg_orders": staging,
        "staging.stg_subscription_events": events or staging,
        LIFECYCLE: lifecycle or events or staging,
    }


def _built(versions: dict[str, str], key: str = "k") -> dict[str, MonthBuild]:
    return {month: MonthBuild(version, f"out-{version}", key) for month, version in versions.items()}


def test_the_plan_follows_the_delivery_versions() -> None:
    inputs = {"": "h1", "2024-01": "a1", "2024-02": "b1"}
    assert plan_build(False, inputs, {}, "k").reason == "first build"
    assert plan_build(True, inputs, {}, "k").reason == "first build"
    assert plan_build(True, inputs, _built(inputs), "k").kind == "unchanged"
    assert plan_build(True, inputs, _built(inputs), "k", full_refresh=True).reason == "--full-refresh"
    # a new month, a redelivered month, a month whose files are gone
    assert plan_build(True, {**inputs, "2024-03": "c1"}, _built(inputs), "k").months == ("2024-03",)
    assert plan_build(True, {**inputs, "2024-01": "a2"}, _built(inputs), "k").months == ("2024-01",)
    without_february = {"": "h1", "2024-01": "a1"}
    assert plan_build(True, without_february, _built(inputs), "k").months == ("2024-02",)
    # changed top-level files are one more month
    assert plan_build(True, {**inputs, "": "h2"}, _built(inputs), "k").months == ("",)
    rebuilt = [
        plan_build(True, inputs, _built(inputs, key="old"), "k"),  # SQL, settings or reference data changed
        plan_build(True, {}, _built(inputs), "k"),  # loaded through an adapter
        plan_build(True, {"": "h2", "2024-01": "a2", "2024-02": "b2"}, _built(inputs), "k"),  # every month changed
    ]
    assert [plan.kind for plan in rebuilt] == ["rebuild"] * 3
    assert "changed" in rebuilt[0].reason and "adapter" in rebuilt[1].reason and "every" in rebuilt[2].reason


def test_a_model_reading_the_files_appends_every_later_month_and_the_top_level_files() -> None:
    inputs = {"": "h1", "2024-01": "a1", "2024-02": "b1", "2024-03": "c1"}
    built = _built(inputs)
    # a new month: that month and the top-level files, read again
    assert plan_build(True, {**inputs, "2024-04": "d1"}, built, "k", reads_files=True).months == ("", "2024-04")
    # a redelivered month: it and every later month
    assert plan_build(True, {**inputs, "2024-02": "b2"}, built, "k", reads_files=True).months == (
        "",
        "2024-02",
        "2024-03",
    )
    assert plan_build(True, {**inputs, "2024-01": "a2"}, built, "k", reads_files=True).reason == "every delivery month changed"
    assert plan_build(True, {**inputs, "": "h2"}, built, "k", reads_files=True).reason == "the top-level files changed"


def _model(tmp_path: Path, text: str) -> sql_models.SqlModel:
    path = tmp_path / "m.sql"
    path.write_text(text, encoding="utf-8")
    return sql_models.parse_model(path, "staging")


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ("-- unique_key: id", "{% if is_incremental() %}where true{% endif %}", "needs `-- incremental_source"),
        (
            "-- incremental_source: raw.other\n-- unique_key: id",
            "{% if is_incremental() %}where true{% endif %}",
            "a table it reads",
        ),
        ("-- incremental_source: raw.orders", "{% if is_incremental() %}where true{% endif %}", "needs `-- unique_key"),
        ("-- incremental_source: raw.orders\n-- unique_key: id", "", "marks what an append reads"),
    ],
)
def test_incremental_directives_are_checked(tmp_path: Path, header: str, body: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _model(tmp_path, f"-- x\n-- materialized: incremental\n{header}\nselect * from raw.orders {body}\n")


def test_only_an_incremental_model_may_append(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need `-- materialized: incremental`"):
        _model(tmp_path, "-- x\nselect * from raw.orders {% if is_incremental() %}where true{% endif %}\n")


def test_the_append_and_the_full_sql_come_from_one_file(tmp_path: Path) -> None:
    model = _model(
        tmp_path,
        "-- Orders.\n-- materialized: incremental\n-- incremental_source: raw.orders\n-- unique_key: source_file, source_row\n"
        "select * from raw.orders\n{% if is_incremental() %}where list_contains($append_months, delivery_month){% else %}where true{% endif %}\n",
    )
    assert (model.incremental_source, model.unique_key) == (("raw", "orders"), ("source_file", "source_row"))
    assert model.description == "Orders."
    assert model.render().endswith("select * from raw.orders\nwhere true")
    assert model.render(incremental=True).endswith("where list_contains($append_months, delivery_month)")
    assert model.bound_parameters == frozenset()


# --- an append equals a rebuild -------------------------------------------------------------

_EVENTS_HEADER = "event_id,customer_id,occurred_at,event_type,plan,price,billing_period,currency,channel,segment\n"
_ORDERS_HEADER = "order_id,customer_id,ordered_at,amount,currency,channel\n"


def _planted(raw: Path) -> None:
    """Copies of one id across deliveries, where an append must recompute rows it was not given."""
    write_raw(
        raw,
        {
            # top-level history: x_late's copy here is later than the one February delivers
            "subscription_events_history.csv": _EVENTS_HEADER
            + (
                "h1,c1,2023-12-20T00:00:00Z,trial_started,,,,,ads,\n"
                "x_late,c9,2024-02-25T00:00:00Z,subscribed,pro,50,month,,ads,\n"
            ),
            "fx_rates.csv": "currency,rate_to_reporting,month\nEUR,1.1,\n",
        },
    )
    write_raw(
        raw / "2024-01",
        {
            "subscription_events.csv": _EVENTS_HEADER
            + (
                "e1,c1,2024-01-05T00:00:00Z,subscribed,pro,50,month,,ads,\n"
                "bad_then_good,c2,not a time,subscribed,pro,50,month,,ads,\n"
                "x_early,c3,2024-01-07T00:00:00Z,subscribed,basic,20,month,EUR,organic,\n"
            ),
            "orders.csv": _ORDERS_HEADER + "o1,k1,2024-01-03T00:00:00Z,10,,ads\no2,k2,2024-01-04T00:00:00Z,5,EUR,\n",
        },
    )
    write_raw(
        raw / "2024-02",
        {
            "subscription_events.csv": _EVENTS_HEADER
            + (
                "e2,c1,2024-02-05T00:00:00Z,renewed,,,,,,\n"
                "bad_then_good,c2,2024-02-01T00:00:00Z,subscribed,pro,50,month,,ads,\n"
                "x_early,c3,2024-02-07T00:00:00Z,subscribed,basic,20,month,,organic,\n"  # a later copy: the duplicate
                "x_late,c9,2024-02-02T00:00:00Z,subscribed,pro,50,month,,ads,\n"  # earlier than history's copy: loaded
            ),
            "orders.csv": _ORDERS_HEADER + "o1,k1,2024-02-03T00:00:00Z,10,,ads\no3,k3,2024-02-09T00:00:00Z,7,,ads\n",
        },
    )
    write_raw(
        raw / "2024-03",
        {
            "subscription_events.csv": _EVENTS_HEADER + "e3,c1,2024-03-05T00:00:00Z,cancelled,,,,,,\n",
            "orders.csv": _ORDERS_HEADER + "o4,k1,2024-03-03T00:00:00Z,10,,ads\n",
        },
    )


_UP_TO_LIFECYCLE = ("stg_fx_rates", "stg_orders", "stg_subscription_events", "int_subscription_events_lifecycle")


def _load(
    conn: duckdb.DuckDBPyConnection,
    raw: Path,
    months: tuple[str, ...] | None,
    models: tuple[str, ...] | None = None,
    **parameters: object,
) -> dict[str, str]:
    """Load the months as a partitioned run does, build every model (or those named); what each incremental model did."""
    for source in SOURCES:
        ingest.load_source(conn, source, raw, months)
    done = {}
    for model in sql_models.topological_order(sql_models.load_models()):
        if models is None or model.name in models:
            done[model.table] = sql_models.run_model(conn, model, sql_parameters(**parameters)).how
    return {table: done[table] for table in INCREMENTAL}


def _tables(conn: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        f"{schema}.{name}"
        for schema, name in conn.execute(
            "select schema_name, table_name from duckdb_tables() where schema_name in ('staging', 'marts') "
            "and table_name <> 'incremental_builds' order by all"
        ).fetchall()
    ]


def _assert_same_tables(
    conn: duckdb.DuckDBPyConnection, raw: Path, models: tuple[str, ...] | None = None, **parameters: object
) -> None:
    """Every staging and marts table equals a rebuild from every file, as a multiset of rows."""
    rebuilt = duckdb.connect()
    rebuilt.execute("set TimeZone = 'UTC'")
    _load(rebuilt, raw, None, models, **parameters)
    tables = _tables(conn)
    assert tables == _tables(rebuilt)
    for table in tables:
        mine = conn.execute(f"select * from {table}").fetchall()
        theirs = rebuilt.execute(f"select * from {table}").fetchall()
        assert sorted(mine, key=repr) == sorted(theirs, key=repr), table


def test_month_by_month_appends_equal_a_rebuild(tmp_path: Path) -> None:
    planted, raw = tmp_path / "planted", tmp_path / "raw"
    _planted(planted)
    shutil.copytree(planted, raw, ignore=shutil.ignore_patterns("2024-03"))
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")

    assert _load(conn, raw, ("2024-01",)) == _did("rebuild: first build")
    # the events' appends read the top-level history again: February's delivery changes a row there (below)
    assert _load(conn, raw, ("2024-02",)) == _did("appended 2024-02", events="appended top-level files, 2024-02")
    _assert_same_tables(conn, raw)
    loaded = dict(
        conn.execute(
            "select event_id || '@' || coalesce(delivery_month, 'top'), coalesce(quarantine_reason, 'loaded') "
            "from staging.stg_subscription_events where event_id like 'x%' or event_id like 'bad%'"
        ).fetchall()
    )
    assert loaded == {
        "x_early@2024-01": "loaded",
        "x_early@2024-02": "duplicate event_id",
        # February's copy is earlier, so the history row (not delivered this month) became the duplicate
        "x_late@2024-02": "loaded",
        "x_late@top": "duplicate event_id",
        "bad_then_good@2024-01": "unparseable occurred_at",
        "bad_then_good@2024-02": "loaded",
    }

    shutil.copytree(planted / "2024-03", raw / "2024-03")  # March arrives
    assert _load(conn, raw, ("2024-03",)) == _did("appended 2024-03", events="appended top-level files, 2024-03")
    # the same month again: the same files, nothing to redo
    assert _load(conn, raw, ("2024-03",)) == _did("unchanged")
    _assert_same_tables(conn, raw)


def test_a_corrected_month_an_old_month_and_a_setting(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _planted(raw)
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    _load(conn, raw, ("2024-01", "2024-02", "2024-03"))

    # February is delivered again: o3 withdrawn, x_early's copy a day later (still the duplicate of
    # January's), x_late's later than the history's (which is loaded again). January stays as it is.
    write_raw(
        raw / "2024-02",
        {
            "orders.csv": _ORDERS_HEADER + "o1,k1,2024-02-03T00:00:00Z,10,,ads\n",
            "subscription_events.csv": _EVENTS_HEADER
            + (
                "e2,c1,2024-02-05T00:00:00Z,renewed,,,,,,\n"
                "x_early,c3,2024-02-08T00:00:00Z,subscribed,basic,20,month,,organic,\n"
                "x_late,c9,2024-02-27T00:00:00Z,subscribed,pro,50,month,,ads,\n"
            ),
        },
    )
    assert _load(conn, raw, ("2024-02",)) == _did(
        "appended 2024-02, 2024-03", events="appended top-level files, 2024-02, 2024-03"
    )
    _assert_same_tables(conn, raw)
    assert conn.execute("select count(*) from staging.stg_orders where order_id = 'o3'").fetchall() == [(0,)]
    reasons = conn.execute(
        "select coalesce(delivery_month, 'top'), coalesce(quarantine_reason, 'loaded') from staging.stg_subscription_events "
        "where event_id = 'x_late' order by 1"
    ).fetchall()
    assert reasons == [("2024-02", "duplicate event_id"), ("top", "loaded")]

    # January is delivered again: o2 and the unparseable row withdrawn; every later month is read again
    write_raw(
        raw / "2024-01",
        {
            "orders.csv": _ORDERS_HEADER + "o1,k1,2024-01-03T00:00:00Z,10,,ads\n",
            "subscription_events.csv": _EVENTS_HEADER
            + (
                "e1,c1,2024-01-05T00:00:00Z,subscribed,pro,50,month,,ads,\n"
                "x_early,c3,2024-01-08T00:00:00Z,subscribed,basic,20,month,EUR,organic,\n"
            ),
        },
    )
    assert _load(conn, raw, ("2024-01",)) == _did("rebuild: every delivery month changed")
    _assert_same_tables(conn, raw)
    assert conn.execute("select count(*) from staging.stg_orders where order_id = 'o2'").fetchall() == [(0,)]

    # another reporting zone moves month boundaries: everything is rebuilt
    built = _load(conn, raw, ("2024-03",), None, timezone="America/New_York")
    assert built == _did("rebuild: its SQL, settings or reference tables changed")
    _assert_same_tables(conn, raw, None, timezone="America/New_York")


def test_changed_fx_rates_rebuild_and_an_adapter_load_forgets_versions(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _planted(raw)
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    _load(conn, raw, ("2024-01", "2024-02"))
    write_raw(raw, {"fx_rates.csv": "currency,rate_to_reporting,month\nEUR,1.2,\n"})
    assert _load(conn, raw, ("2024-03",))["staging.stg_orders"] == "rebuild: its SQL, settings or reference tables changed"
    _assert_same_tables(conn, raw)
    assert conn.execute("select amount from staging.stg_orders where order_id = 'o2'").fetchall() == [(6.0,)]

    ingest._create_raw_table(conn, SOURCES[0])  # what an adapter does before filling raw.orders
    assert conn.execute("select count(*) from raw.delivery_versions where source = 'orders'").fetchall() == [(0,)]


def test_a_generated_monthly_history_appends_to_a_rebuild(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate(raw, GeneratorConfig(customers=400, months=4, seed=5, messy_share=0.05, layout="monthly"))
    months = sorted(path.name for path in raw.iterdir() if path.is_dir())
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    _load(conn, raw, tuple(months[:-1]))
    assert _load(conn, raw, (months[-1],)) == _did(f"appended {months[-1]}", events=f"appended top-level files, {months[-1]}")
    _assert_same_tables(conn, raw)
    duplicates = conn.execute(
        "select count(*) from staging.stg_subscription_events where quarantine_reason = 'duplicate event_id'"
    )
    assert duplicates.fetchall()[0][0] > 0


# --- the lifecycle append against a rebuild, on random histories ---------------------------------

_TYPES = list(LIFECYCLE_EVENT_TYPES)
_MONTHS = ["2024-01", "2024-02", "2024-03"]
# where a row is delivered, and the month it happened in: a month folder holds its own month only;
# top-level rows can be from any month, before the first folder or in between
_in_folders = st.sampled_from([(month, month) for month in _MONTHS])
_placements = st.one_of(_in_folders, st.sampled_from([("", "2023-12"), ("", "2024-02")]))
_times = st.sampled_from([(1, 0), (1, 0), (1, 12), (28, 23)])  # day, hour: ties and month edges are common
_plans = st.sampled_from(["basic", "pro", ""])  # any type may carry a plan; the plan-setting ones need one
_prices = st.sampled_from(["10", "50"])
_event = st.tuples(st.sampled_from(_TYPES), _placements, _times, _plans, _prices)

# what a history that keeps to the lifecycle allows next, and the state it leads to
_NEXT = {
    "new": {"trial_started": "trialing", "subscribed": "active"},
    "trialing": {"cancelled": "new", "subscribed": "active"},
    "active": {
        **dict.fromkeys(["renewed", "plan_changed", "price_changed", "payment_failed"], "active"),
        **dict.fromkeys(["cancelled", "expired"], "churned"),
    },
    "churned": {"reactivated": "active", "subscribed": "active"},
}


@st.composite
def _lifecycle_history(draw: st.DrawFn) -> list[tuple]:
    """Events that keep to the lifecycle, in time order, in month folders: the customers an append
    continues (random histories mostly contradict the lifecycle, and top-level rows come again
    with every month: either way the customer is recomputed). Events tied on the instant may
    still be reordered by type, and so contradict it."""
    size = draw(st.integers(1, 8))
    slots = draw(st.lists(st.tuples(_in_folders, _times), min_size=size, max_size=size))
    state, history = "new", []
    for placement, when in sorted(slots, key=lambda slot: (slot[0][1], slot[1])):
        kind, state = draw(st.sampled_from(sorted(_NEXT[state].items())))
        history.append((kind, placement, when, draw(_plans), draw(_prices)))
    return history


def _history_files(raw: Path, customers: list[list[tuple]]) -> None:
    files: dict[str, list[str]] = {}
    for c, history in enumerate(customers):
        for i, (kind, (folder, month), (day, hour), plan, price) in enumerate(history):
            sets_plan = kind in ("subscribed", "reactivated", "plan_changed", "price_changed")
            line = f"e{c}_{i},c{c},{month}-{day:02d}T{hour:02d}:00:00Z,{kind},{plan or ('pro' if sets_plan else '')},{price if sets_plan else ''},month,,,"
            files.setdefault(folder, []).append(line)
    for folder, lines in files.items():
        name = "subscription_events_history.csv" if folder == "" else f"{folder}/subscription_events.csv"
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        (raw / name).write_text(_EVENTS_HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    for month in _MONTHS:  # every month is a delivery, even one with no events
        (raw / month).mkdir(exist_ok=True)
        (raw / month / "orders.csv").write_text(_ORDERS_HEADER + f"o{month},k1,{month}-02T00:00:00Z,10,,\n", encoding="utf-8")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    customers=st.lists(st.one_of(st.lists(_event, min_size=1, max_size=8), _lifecycle_history()), min_size=1, max_size=12),
    first=st.integers(1, 2),
    backwards=st.booleans(),  # after one month, March before February: an older month delivered late
    zone=st.sampled_from(["UTC", "America/New_York"]),  # New York: a month's first UTC hours belong to the month before
)
def test_appended_lifecycles_equal_a_rebuild(customers: list[list[tuple]], first: int, backwards: bool, zone: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        raw = Path(name)
        _history_files(raw, customers)
        conn = duckdb.connect()
        conn.execute("set TimeZone = 'UTC'")
        _load(conn, raw, tuple(_MONTHS[:first]), _UP_TO_LIFECYCLE, timezone=zone)
        for month in _MONTHS[first:][:: -1 if backwards else 1]:
            conn.execute(f"create or replace temp table lifecycle_before as select * from {LIFECYCLE}")
            versions_before = _output_versions(conn, LIFECYCLE)
            _load(conn, raw, (month,), _UP_TO_LIFECYCLE, timezone=zone)
            # every month whose rows changed (post hook included) is recorded as rewritten
            versions_after = _output_versions(conn, LIFECYCLE)
            rewritten = {m for m, version in versions_after.items() if versions_before.get(m) != version}
            assert _months_that_changed(conn, "lifecycle_before", LIFECYCLE) <= rewritten
        _assert_same_tables(conn, raw, _UP_TO_LIFECYCLE, timezone=zone)


def _output_versions(conn: duckdb.DuckDBPyConnection, model: str) -> dict[str, str]:
    found = conn.execute(
        "select delivery_month, output_version from staging.incremental_builds where model = $m", {"m": model}
    ).fetchall()
    return dict(found)


def _months_that_changed(conn: duckdb.DuckDBPyConnection, before: str, after: str) -> set[str]:
    changed = conn.execute(
        f"""select distinct coalesce(delivery_month, '') from (
            (select * from {before} except all select * from {after})
            union all
            (select * from {after} except all select * from {before})
        )"""
    ).fetchall()
    return {month for (month,) in changed}


# --- the staging appends against a rebuild, on random deliveries with repeated ids and bad rows ----

# (folder, month the row happened in): a folder's own month, a month outside it (quarantined), or top level
_row_placements = st.sampled_from(
    [("2024-01", "2024-01"), ("2024-02", "2024-02"), ("2024-03", "2024-03"), ("2024-02", "2024-01"), ("", "2024-02")]
)
_when = st.sampled_from([(1, 0), (5, 12), (5, 12), (28, 23)])  # repeated instants: copies tie on time
_order_row = st.tuples(
    st.sampled_from(["o1", "o1", "o2", "o2", "o3", "NULL"]),  # a small pool, so ids repeat across deliveries
    st.sampled_from(["k1", "k2", "k1", "k2", ""]),
    _row_placements,
    _when,
    st.sampled_from(["10", "10", "5", "5", "-3", "x", ""]),
    st.sampled_from(["", "", "EUR", "usd", "ZZZ", "E1"]),
)
_event_row = st.tuples(
    st.sampled_from(["e1", "e1", "e2", "e2", "e3", ""]),
    st.sampled_from(["c1", "c2"]),
    _row_placements,
    _when,
    st.sampled_from(["subscribed", "subscribed", "renewed", "cancelled", "bogus"]),
    st.sampled_from(["pro", "pro", ""]),
    st.sampled_from(["50", "50", "20", "20", "-1", "abc", ""]),
    st.sampled_from(["", "", "EUR", "ZZZ"]),
)


def _order_line(row: tuple, position: int) -> str:
    order_id, customer, (_, month), (day, hour), amount, currency = row
    return f"{order_id},{customer},{month}-{day:02d}T{hour:02d}:00:00Z,{amount},{currency},ch{position % 2}"


def _event_line(row: tuple) -> str:
    event_id, customer, (_, month), (day, hour), kind, plan, price, currency = row
    return f"{event_id},{customer},{month}-{day:02d}T{hour:02d}:00:00Z,{kind},{plan},{price},month,{currency},ads,"


def _write_deliveries(raw: Path, orders: list[tuple], events: list[tuple], only: str | None = None) -> None:
    """Each row into its folder's file (`only`: rewrite that month's files alone, as a redelivery)."""
    for folder in ["", *_MONTHS] if only is None else [only]:
        orders_text = "".join(_order_line(row, i) + "\n" for i, row in enumerate(orders) if row[2][0] == folder)
        events_text = "".join(_event_line(row) + "\n" for row in events if row[2][0] == folder)
        write_raw(
            raw / folder, {"orders.csv": _ORDERS_HEADER + orders_text, "subscription_events.csv": _EVENTS_HEADER + events_text}
        )
    if only is None:
        write_raw(raw, {"fx_rates.csv": "currency,rate_to_reporting,month\nEUR,1.1,\n"})


def _moved(row: tuple, folder: str) -> tuple:
    """The row delivered in `folder` instead: a row that was in its folder's month moves into this
    folder's month; any other keeps its month (inside this folder's or not)."""
    delivered_in, month = row[2]
    return (*row[:2], (folder, folder if month == delivered_in else month), *row[3:])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    orders=st.lists(_order_row, min_size=4, max_size=16),
    events=st.lists(_event_row, min_size=4, max_size=16),
    first=st.integers(1, 2),
    redelivered=st.one_of(
        st.none(),
        st.tuples(st.sampled_from(_MONTHS[:2]), st.lists(_order_row, max_size=4), st.lists(_event_row, max_size=4)),
    ),
)
def test_appended_staging_equals_a_rebuild(
    orders: list[tuple], events: list[tuple], first: int, redelivered: tuple | None
) -> None:
    """Both staging models (and the lifecycle after them), appended month by month and then after an
    earlier month is delivered again with other rows, equal a rebuild from the files as they end up:
    ids repeated within and across months and top-level files, ties on time, and bad rows of every
    kind, so which copy is loaded and what is quarantined can change in rows an append did not read."""
    with tempfile.TemporaryDirectory() as name:
        raw = Path(name)
        _write_deliveries(raw, orders, events)
        conn = duckdb.connect()
        conn.execute("set TimeZone = 'UTC'")
        _load(conn, raw, tuple(_MONTHS[:first]), _UP_TO_LIFECYCLE)
        for month in _MONTHS[first:]:
            _load(conn, raw, (month,), _UP_TO_LIFECYCLE)
        if redelivered is not None:
            month, new_orders, new_events = redelivered
            kept_orders = [row for row in orders if row[2][0] != month] + [_moved(row, month) for row in new_orders]
            kept_events = [row for row in events if row[2][0] != month] + [_moved(row, month) for row in new_events]
            _write_deliveries(raw, kept_orders, kept_events, only=month)
            _load(conn, raw, (month,), _UP_TO_LIFECYCLE)
        _assert_same_tables(conn, raw, _UP_TO_LIFECYCLE)
