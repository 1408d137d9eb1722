"""Ties: many rows at one instant give the same, correct tables on every run and in any row order.

Exports often round timestamps to the second or the day, so one customer's orders or events can
share an instant. Every window whose result depends on row order sorts by a unique tie-breaker
(the order or event id), so tied rows are numbered the same way by every window of a model.
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churn_pipeline.lib.generate import GeneratorConfig, generate
from helpers import Built

AS_OF = "2024-01-10T00:00:00Z"


@pytest.fixture(scope="module")
def tied_orders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hardening issue's reproduction: 30,000 orders of 700 customers at one instant."""
    directory = tmp_path_factory.mktemp("tied_orders")
    lines = ["order_id,customer_id,ordered_at,amount"]
    lines += [f"t{i},c{i % 700},2023-06-01T10:00:00Z,10" for i in range(30_000)]
    lines.append("x1,other,2023-12-01T00:00:00Z,5")
    (directory / "orders.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def test_tied_orders_make_one_spell_per_customer_on_every_build(tied_orders: Path) -> None:
    builds = []
    for _ in range(3):
        built = Built(tied_orders, as_of=AS_OF)
        spells = built.sql("select spell_number, count(*) as spells from staging.int_customer_spells group by all")
        assert spells.rows() == [(1, 701)]
        builds.append(built.published_tables())
    monthly = builds[0]["churn_by_month"].filter(pl.col("basis") == "orders")
    by_month = {row["month"]: row for row in monthly.iter_rows(named=True)}
    # 700 customers join in June 2023 and churn 90 days after 1 June (30 August); `other` joins in
    # December and is still inside its window at as_of
    assert by_month[date(2023, 6, 1)]["new_customers"] == 700
    assert by_month[date(2023, 8, 1)]["churned"] == 700
    assert by_month[date(2023, 12, 1)]["new_customers"] == 1
    assert by_month[date(2023, 12, 1)]["customers_end"] == 1
    for row in monthly.iter_rows(named=True):
        assert row["customers_end"] == row["customers_start"] + row["new_customers"] + row["reactivated"] - row["churned"]
    for other in builds[1:]:
        for table, frame in other.items():
            assert frame.equals(builds[0][table]), table


def test_tied_subscription_events_follow_the_lifecycle_order(tmp_path: Path) -> None:
    """At one instant: a subscription before a plan change before a cancellation, whatever the
    file order; two plan changes at one instant apply in event_id order."""
    (tmp_path / "subscription_events.csv").write_text(
        "event_id,customer_id,occurred_at,event_type,plan,price\n"
        "e4,c1,2024-01-10T00:00:00Z,cancelled,,\n"
        "e3,c1,2024-01-10T00:00:00Z,plan_changed,pro,40\n"
        "e2,c1,2024-01-10T00:00:00Z,plan_changed,mid,30\n"
        "e1,c1,2024-01-10T00:00:00Z,subscribed,basic,20\n"
        "f1,c2,2024-02-01T00:00:00Z,subscribed,basic,20\n",
        encoding="utf-8",
    )
    built = Built(tmp_path, as_of="2024-03-10T00:00:00Z")
    events = built.sql(
        "select event_id, event_seq, mrr_before, mrr_after, movement from staging.int_subscription_events_lifecycle "
        "where customer_id = 'c1' order by event_seq"
    )
    assert events.rows() == [
        ("e1", 1, 0.0, 20.0, "new"),
        ("e2", 2, 20.0, 30.0, "expansion"),
        ("e3", 3, 30.0, 40.0, "expansion"),
        ("e4", 4, 40.0, 0.0, "voluntary_churn"),
    ]
    january = built.published_tables()["churn_by_month"].filter(
        (pl.col("basis") == "subscription") & (pl.col("month") == date(2024, 1, 1))
    )
    assert january.select("new_mrr", "expansion_mrr", "churned_mrr", "mrr_end").row(0) == (20.0, 20.0, 40.0, 0.0)


PROPERTY_SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# every timestamp rounded down to its month's first day
ROUNDING = {"orders": ("ordered_at", "-01T00:00:00Z", 7), "subscription_events": ("occurred_at", "-01T00:00:00Z", 7)}


@pytest.fixture(scope="module")
def rounded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    """A generated history with its timestamps rounded down: many ties per customer."""
    directory = tmp_path_factory.mktemp("rounded")
    generate(directory, GeneratorConfig(customers=150, months=8, seed=11, messy_share=0.0))
    frames = {}
    for source, (column, suffix, kept) in ROUNDING.items():
        parts = [
            pl.read_csv(p, infer_schema=False) if p.suffix == ".csv" else pl.read_parquet(p).cast(pl.String)
            for p in sorted(directory.glob(f"{source}_part*"))
        ]
        frame = pl.concat(parts, how="vertical_relaxed")
        frames[source] = frame.with_columns(pl.col(column).str.slice(0, kept) + suffix)
    return frames


def _published(frames: dict[str, pl.DataFrame], directory: Path) -> dict[str, pl.DataFrame]:
    for source, frame in frames.items():
        frame.write_csv(directory / f"{source}.csv")
    return Built(directory, as_of="2023-08-20T00:00:00Z").published_tables()


@pytest.fixture(scope="module")
def rounded_baseline(rounded: dict[str, pl.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    return _published(rounded, tmp_path_factory.mktemp("rounded_baseline"))


def test_rounded_history_has_ties(rounded: dict[str, pl.DataFrame]) -> None:
    for source, (column, _, _) in ROUNDING.items():
        frame = rounded[source]
        assert frame.height - frame.select("customer_id", column).n_unique() > 20, source


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), repeats=st.integers(0, 20))
def test_tied_rows_in_any_order_give_identical_tables(
    rounded: dict[str, pl.DataFrame], rounded_baseline: dict[str, pl.DataFrame], seed: int, repeats: int
) -> None:
    """Shuffled rows, plus exact repeats of some rows (duplicate deliveries at a shared instant)."""
    frames = {}
    for source, frame in rounded.items():
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
        frames[source] = pl.concat([shuffled, shuffled.head(repeats)]).sample(fraction=1.0, shuffle=True, seed=seed + 1)
    with tempfile.TemporaryDirectory() as name:
        tables = _published(frames, Path(name))
    for table, expected in rounded_baseline.items():
        assert tables[table].equals(expected), table
