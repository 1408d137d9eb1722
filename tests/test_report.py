"""The churn report, the generated table docs and what the Dagster UI shows."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from churn_pipeline.lib.generate import GeneratorConfig, generate
from churn_pipeline.lib.report import BASES
from churn_pipeline.lib.report_charts import retention_heatmap
from churn_pipeline.lib.schemas import load_schemas
from churn_pipeline.lib.table_docs import TABLES, markdown
from helpers import run_job

ROOT = Path(__file__).resolve().parent.parent

# the report's sections besides data quality, as its page links them
SECTIONS = ("cohort-heatmap", "retention-curve", "hazard", "channel", "segment", "price-changes", "monthly", "reactivation")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPORT_METADATA: dict = {}  # the churn_report materialization's metadata, filled by the `run` fixture


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    generate(raw, GeneratorConfig(customers=1500, months=15, seed=21, messy_share=0.01))
    # a hostile channel name must reach the page as text, never as markup
    orders = sorted(raw.glob("orders_part1*"))[0]
    frame = pl.read_csv(orders, infer_schema=False)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 9 == 0)
        .then(pl.lit("<script>alert(1)</script>"))
        .otherwise(pl.col("channel"))
        .alias("channel")
    )
    frame.write_csv(orders)
    workdir = tmp_path_factory.mktemp("run")
    result = run_job(raw, workdir)
    assert result.success
    [materialization] = result.asset_materializations_for_node("churn_report")
    REPORT_METADATA.update(materialization.metadata)
    return workdir


def _report(run: Path) -> str:
    return (run / "marts" / "churn_report.html").read_text(encoding="utf-8")


def test_the_report_is_self_contained_and_has_every_section(run: Path) -> None:
    page = _report(run)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page), "no external resources"
    assert "@import" not in page and not re.search(r"url\((?!#)", page)  # only internal clip paths
    assert not re.search(r"""href="(?!data:|#)""", page)  # images inline, links within the page
    for basis in BASES:
        section = page.split(f'<section class="basis" id="{basis}">')[1].split("</section>")[0]
        present = set(re.findall(r'data-section="([a-z-]+)"', section))
        expected = set(SECTIONS) - ({"price-changes"} if basis == "orders" else set())
        assert present == expected, basis
        assert section.count("<svg") == section.count('<figure class="chart"')  # every chart drawn
    assert 'id="data-quality"' in page
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert captions and all("as of " in caption for caption in captions)


def _html_table_after(page: str, marker: str) -> list[list[str]]:
    table = page.split(marker, 1)[1].split("<table>", 1)[1].split("</table>", 1)[0]
    return [[html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row)] for row in re.findall(r"<tr>(.*?)</tr>", table)]


def test_the_report_numbers_are_the_published_tables_numbers(run: Path) -> None:
    page = _report(run)
    with duckdb.connect(str(run / "warehouse.duckdb"), read_only=True) as conn:
        raw = {
            s: conn.sql(f"select count(*) from raw.{s}").fetchall()[0][0]
            + conn.sql("select count(*) from raw.csv_rejects where source = $s", params={"s": s}).fetchall()[0][0]
            for s in ("orders", "subscription_events", "fx_rates")
        }
        quarantined = dict(conn.sql("select source, count(*) from marts.quarantine group by 1").fetchall())
    quality = {row[0]: [int(v) for v in row[1:]] for row in _html_table_after(page, 'id="data-quality"') if row}
    for source, count in raw.items():
        assert quality[source][0] == count
        assert quality[source][2] == quarantined.get(source, 0)
        assert quality[source][1] + quality[source][2] == count

    channels = pl.read_parquet(run / "marts" / "churn_by_channel.parquet").filter(pl.col("basis") == "subscription")
    subscription_section = page.split('id="subscription"')[1].split("</section>")[0]
    shown = {row[0]: row for row in _html_table_after(subscription_section, "<figcaption>Churn by acquisition channel") if row}
    assert set(shown) == set(channels["channel"])
    for row in channels.iter_rows(named=True):
        assert shown[row["channel"]][1] == str(row["customers"])
        assert shown[row["channel"]][2] == f"{row['monthly_churn_rate'] * 100:.1f} %"

    flagged = pl.read_parquet(run / "marts" / "high_risk_months.parquet").filter(pl.col("is_high_risk"))
    assert flagged.filter(pl.col("basis") == "subscription")["months_since_signup"].to_list() == [5]  # planted
    for row in flagged.iter_rows(named=True):
        section = page.split(f'id="{row["basis"]}"')[1].split("</section>")[0]
        assert f"Month {row['months_since_signup']}: {row['hazard'] * 100:.1f} % of the {row['at_risk']:,} customers" in section


def test_the_dagster_ui_shows_the_reports_own_key_charts(run: Path) -> None:
    page = _report(run)
    charts = {key: value for key, value in REPORT_METADATA.items() if key.startswith("chart: ")}
    assert sorted(charts) == ["chart: cohort-heatmap", "chart: hazard", "chart: monthly"]
    for key, value in charts.items():
        section = key.removeprefix("chart: ")
        match = re.fullmatch(rf"!\[{section}\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", value.md_str)
        svg = base64.b64decode(match.group(1)).decode()
        # the subscription basis comes first: its first chart of that section, byte for byte
        first = page.split(f'<figure class="chart" data-section="{section}">')[1]
        assert svg.startswith("<svg") and first.startswith(svg + "<figcaption>")


@pytest.mark.slow
def test_the_report_in_a_headless_browser(run: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium; apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    url = (run / "marts" / "churn_report.html").as_uri()
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(url, wait_until="load")
        sections = page.eval_on_selector_all("[data-section]", "nodes => nodes.map(n => n.dataset.section)")
        charts = page.eval_on_selector_all(
            "figure.chart svg", "nodes => nodes.filter(n => n.getBoundingClientRect().height > 50).length"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "churn_report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert requests == [url]  # the page itself, nothing else
    assert set(sections) == {*SECTIONS, "data-quality"}
    assert charts == _report(run).count("<svg")
    assert (ARTIFACTS / "churn_report.png").stat().st_size > 50_000


def test_docs_tables_md_is_generated_from_code() -> None:
    assert (ROOT / "docs" / "tables.md").read_text(encoding="utf-8") == markdown(), (
        "docs/tables.md is stale: python -m churn_pipeline.lib.table_docs > docs/tables.md"
    )


# the Arrow type of each DuckDB type in the Parquet files, as docs/tables.md states it
PARQUET_TYPES = {
    "BIGINT": "int64",
    "INTEGER": "int32",
    "DOUBLE": "double",
    "DATE": "date32[day]",
    "VARCHAR": "large_string",
    "BOOLEAN": "bool",
    "TIMESTAMP WITH TIME ZONE": "timestamp[us, tz=UTC]",
}


def test_table_docs_match_the_published_files(run: Path) -> None:
    import pyarrow.parquet as pq

    with duckdb.connect(str(run / "warehouse.duckdb"), read_only=True) as conn:
        for table in TABLES:
            described = conn.sql(f"describe marts.{table.name}").fetchall()
            assert [row[0] for row in described] == list(table.columns), table.name
            documented = {column.name: column.data_type for column in load_schemas()[f"marts.{table.name}"]}
            assert {row[0]: row[1] for row in described} == documented, table.name
            if table.parquet:
                parquet = pq.read_schema(run / "marts" / f"{table.name}.parquet")
                assert parquet.names == list(table.columns), table.name
                assert {f.name: str(f.type) for f in parquet} == {c: PARQUET_TYPES[t] for c, t in documented.items()}, table.name
    published = {path.stem for path in (run / "marts").glob("*.parquet")}
    assert published == {table.name for table in TABLES if table.parquet}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_dagster_webserver_lists_every_asset_check_and_schedule(tmp_path: Path) -> None:
    from churn_pipeline.definitions import defs

    graph = defs().resolve_asset_graph()
    expected_assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    expected_checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    query = """{ assetNodes { assetKey { path } description groupName assetChecksOrError { ... on AssetChecks { checks { name } } } }
                 repositoriesOrError { ... on RepositoryConnection { nodes { schedules { name cronSchedule } } } } }"""
    try:
        deadline, answer = time.monotonic() + 120, None
        while time.monotonic() < deadline and answer is None:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=json.dumps({"query": query}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                body = json.loads(urllib.request.urlopen(request, timeout=10).read())
                if body.get("data", {}).get("assetNodes"):
                    answer = body["data"]
            except OSError:
                time.sleep(1)
        assert answer is not None, "the webserver did not answer within 120 s"
    finally:
        server.terminate()
        server.wait(timeout=30)
    nodes = answer["assetNodes"]
    assert {"/".join(node["assetKey"]["path"]) for node in nodes} == expected_assets
    assert all(node["description"] for node in nodes), "every asset explains itself"
    assert {node["groupName"] for node in nodes} >= {"ingest", "staging", "intermediate", "marts", "cohorts", "churn", "outputs"}
    checks = {
        ("/".join(node["assetKey"]["path"]), check["name"])
        for node in nodes
        for check in node["assetChecksOrError"].get("checks", [])
    }
    assert checks == expected_checks
    schedules = [s for repository in answer["repositoriesOrError"]["nodes"] for s in repository["schedules"]]
    assert schedules == [{"name": "monthly_churn_schedule", "cronSchedule": "0 6 2 * *"}]


def test_the_analyst_examples_run_and_agree_with_the_tables(run: Path) -> None:
    from churn_pipeline.lib.analyst import connect_readonly

    text = (ROOT / "docs" / "for_analysts.md").read_text(encoding="utf-8")
    queries = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    assert len(queries) == 6
    conn = connect_readonly(run / "warehouse.duckdb")
    results = [conn.sql(query).pl() for query in queries]
    assert all(result.height > 0 for result in results)
    spike = results[0].filter(pl.col("basis") == "subscription")
    assert spike["months_since_signup"].to_list() == [5]

    entering = results[1]
    listed = pl.read_parquet(run / "marts" / "customers_entering_high_risk.parquet").filter(pl.col("basis") == "subscription")
    assert entering["customers"].sum() == listed.height and entering["mrr_at_stake"].sum() == pytest.approx(
        listed["current_mrr"].sum()
    )

    trend = results[4]
    last_months = conn.sql("select basis, max(month) from marts.churn_by_month group by 1").fetchall()
    assert trend.group_by("basis").agg(pl.len(), pl.col("month").max()).sort("basis").rows() == [
        (basis, 6, latest) for basis, latest in sorted(last_months)
    ]

    by_channel = results[3]
    quarter = conn.sql("""select customers_start, churned from marts.churn_by_quarter
                          where basis = 'subscription' order by quarter desc limit 1""").fetchall()[0]
    assert (by_channel["customers_at_start"].sum(), by_channel["churned_in_quarter"].sum()) == quarter
    conn.close()


def test_a_long_history_heatmap_labels_every_cohort_it_can_and_starts_at_the_first() -> None:
    cohorts = [date(2020 + m // 12, m % 12 + 1, 1) for m in range(30)]
    frame = pl.DataFrame(
        {
            "basis": "orders",
            "cohort_month": [c for i, c in enumerate(cohorts) for _ in range(30 - i)],
            "months_since_signup": [k for i in range(30) for k in range(30 - i)],
            "retention_rate": [1.0 / (k + 1) for i in range(30) for k in range(30 - i)],
        }
    )
    fig = retention_heatmap(frame, "orders")
    ax = fig.axes[0]
    # 30 cohorts and 30 months: every 2nd cohort (15 <= 24 labels) and every 3rd month (10 <= 13)
    assert [t.get_text() for t in ax.get_yticklabels()] == [c.strftime("%Y-%m") for c in cohorts[::2]]
    assert list(ax.get_xticks()) == list(range(0, 30, 3))
