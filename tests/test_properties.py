"""Property-based tests: the published tables do not depend on file or row order, and any
mix of bad rows reconciles (raw rows = loaded + quarantined, each with a reason)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churn_pipeline.lib.generate import GeneratorConfig, generate
from helpers import Built

PROPERTY_SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    """A small generated history (with some bad rows), read back as text."""
    directory = tmp_path_factory.mktemp("base")
    generate(directory, GeneratorConfig(customers=150, months=8, seed=3, messy_share=0.02))
    frames = {}
    for source in ("orders", "subscription_events"):
        parts = [
            pl.read_csv(p, infer_schema=False) if p.suffix == ".csv" else pl.read_parquet(p).cast(pl.String)
            for p in sorted(directory.glob(f"{source}_part*"))
        ]
        frames[source] = pl.concat(parts, how="vertical_relaxed")
    return frames


@pytest.fixture(scope="module")
def baseline(rows: dict[str, pl.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    directory = tmp_path_factory.mktemp("baseline")
    for source, frame in rows.items():
        frame.write_csv(directory / f"{source}.csv")
    return Built(directory, as_of="2023-08-20T00:00:00Z").published_tables()


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), files=st.integers(1, 4), parquet=st.lists(st.booleans(), min_size=4, max_size=4))
def test_published_tables_do_not_depend_on_file_or_row_order(
    rows: dict[str, pl.DataFrame], baseline: dict[str, pl.DataFrame], seed: int, files: int, parquet: list[bool]
) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        for source, frame in rows.items():
            shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
            size = -(-shuffled.height // files)
            for index in range(files):
                part = shuffled.slice(index * size, size)
                if parquet[index]:
                    part.write_parquet(directory / f"{source}_{index}.parquet")
                else:
                    part.write_csv(directory / f"{source}_{index}.csv")
        tables = Built(directory, as_of="2023-08-20T00:00:00Z").published_tables()
    for table, expected in baseline.items():
        assert tables[table].equals(expected), table


GOOD_ORDER = ["o{i}", "c{c}", "2024-0{m}-1{d}T10:00:00Z", "{a}.5", "EUR", "ads"]
ORDER_COLUMNS = ["order_id", "customer_id", "ordered_at", "amount", "currency", "channel"]

# what can go wrong in one field, as text a CSV writer quotes correctly
bad_field = st.one_of(
    st.just(""),
    st.sampled_from(["not a time", "2024-02-30T00:00:00Z", "twelve", "-", "NaN", "inf", "XYZ", "eur", "1e999"]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
)
# what can go wrong in a whole line, as bytes: the parser's rejects
bad_line = st.sampled_from(
    [
        b"o-extra,c1,2024-01-05T00:00:00Z,1,USD,ads,surplus\n",  # too many columns
        b"o-short,c1\n",  # too few
        b"o-bytes,c1,2024-01-05T00:00:00Z,\xff\xfe,USD,ads\n",  # invalid UTF-8
    ]
)


def _csv_field(value: str) -> bytes:
    return ('"' + value.replace('"', '""') + '"').encode("utf-8")


@PROPERTY_SETTINGS
@given(
    good=st.integers(5, 40),
    field_faults=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 5), bad_field), max_size=15),
    line_faults=st.lists(st.tuples(st.integers(0, 40), bad_line), max_size=5),
    duplicates=st.lists(st.integers(0, 39), max_size=5),
    unterminated_tail=st.booleans(),
    bom=st.booleans(),
)
def test_any_bad_rows_reconcile(
    good: int, field_faults: list, line_faults: list, duplicates: list, unterminated_tail: bool, bom: bool
) -> None:
    records = [[part.format(i=i, c=i % 7, m=1 + i % 3, d=i % 9, a=10 + i) for part in GOOD_ORDER] for i in range(good)]
    for row, column, value in field_faults:
        if row < good:
            records[row][column] = value
    records += [list(records[row]) for row in duplicates if row < good]
    lines = [b",".join(_csv_field(v) for v in record) + b"\n" for record in records]
    for position, line in sorted(line_faults, reverse=True):
        lines.insert(min(position, len(lines)), line)
    if unterminated_tail:
        lines.append(b'o-open,c1,"2024-01-05T00:00:00Z,1,USD,ads\n')
    header = (b"\xef\xbb\xbf" if bom else b"") + ",".join(ORDER_COLUMNS).encode() + b"\n"
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        (directory / "orders.csv").write_bytes(header + b"".join(lines))
        built = Built(directory)
        loaded = built.sql("select count(*) from staging.int_orders").item()
        quarantine = built.sql("select source_row, reason from marts.quarantine where source = 'orders'")
    assert loaded + quarantine.height == len(lines)  # every record we wrote: loaded or quarantined
    assert quarantine["reason"].null_count() == 0
    assert quarantine["source_row"].is_unique().all()
    assert set(quarantine["source_row"]) <= set(range(1, len(lines) + 1))
