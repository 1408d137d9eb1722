"""Source adapters on Spark: the same adapter SQL and checks as on DuckDB, the same tables."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from spark_compare import assert_same_tables, build_both
from test_adapters import EXTERNAL, FOODIE_PLANS, FOODIE_SUBS, RETAIL

from churn_pipeline.lib.adapters import AdapterError, load_adapter
from churn_pipeline.lib.raw_sources import SOURCES
from churn_pipeline.lib.spark_ingest import register_through_adapter
from helpers import write_raw

# Online Retail's slice with a record the CSV reader cannot read (too many fields)
RETAIL_WITH_UNREADABLE = RETAIL + "536383,22115,BOTTLE,1,2011-08-01 10:00:00,5.00,13047.0,United Kingdom,extra\n"


@pytest.mark.parametrize(
    "source, files",
    [
        ("online_retail", {"online_retail.csv": RETAIL_WITH_UNREADABLE}),
        ("foodie_fi", {"subscriptions.csv": FOODIE_SUBS, "plans.csv": FOODIE_PLANS}),
    ],
)
def test_source_adapters(spark, tmp_path: Path, source: str, files: dict[str, str]) -> None:
    """An adapter's select over its own files runs on Spark from the same SQL, with its options bound."""
    raw = write_raw(tmp_path, files)
    conn = build_both(spark, raw, tmp_path, source=source)
    assert conn.sql("select count(*) from staging.int_customers").fetchall()[0][0] > 0
    assert_same_tables(spark, conn)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["foodie_fi", "online_retail"])
def test_public_data_sets(spark, tmp_path: Path, source: str) -> None:
    raw_dir = EXTERNAL / source
    if not raw_dir.exists():
        pytest.skip(f"public data set {raw_dir} is not here (set CHURN_PUBLIC_DATA to the folder that holds {source}/)")
    assert_same_tables(spark, build_both(spark, raw_dir, tmp_path, source=source))


def test_an_adapter_row_key_repeated_on_spark_is_the_same_one_line(spark, tmp_path: Path) -> None:
    root = tmp_path / "doubling"
    root.mkdir()
    shipped = load_adapter("foodie_fi")
    (root / "subscription_events.sql").write_text(
        shipped.sql_for("subscription_events") + "\nunion all\nselect * from final where event_type = 'cancelled'\n",
        encoding="utf-8",
    )
    raw = write_raw(tmp_path, {"subscriptions.csv": FOODIE_SUBS, "plans.csv": FOODIE_PLANS})
    events = next(source for source in SOURCES if source.name == "subscription_events")
    with pytest.raises(
        AdapterError,
        match=r"foodie_fi/subscription_events\.sql: 2 output rows share source_file "
        r"'subscriptions\.csv', source_row 4; each output row must point back",
    ):
        register_through_adapter(spark, replace(shipped, root=root), events, raw, shipped.options({}))
