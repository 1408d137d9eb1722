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

from churn_pipeline.lib.churn_tables import BenchmarkBands
from churn_pipeline.lib.generate import GeneratorConfig, generate
from churn_pipeline.lib.observation import read_observation
from churn_pipeline.lib.quality import quarantine_reasons, reconciliation
from churn_pipeline.lib.report import BASES, ReportInputs, render
from churn_pipeline.lib.report_charts import (
    hazard_chart,
    monthly_chart,
    rate_ratio_chart,
    reactivation_chart,
    retention_heatmap,
)
from churn_pipeline.lib.schemas import load_schemas
from churn_pipeline.lib.table_docs import TABLES, markdown
from churn_pipeline.lib.warehouse_tables import DuckDBTables
from helpers import Built, run_job

ROOT = Path(__file__).resolve().parent.parent

# the report's blocks per basis (data-section), as its page draws them
SECTIONS = {
    "subscription": {
        "cohort-heatmap", "revenue-heatmap", "retention-curve", "hazard", "entering-high-risk", "channel", "segment",
        "price-changes", "monthly", "reactivation",
    },
    "orders": {
        "cohort-heatmap", "revenue-heatmap", "retention-curve", "hazard", "entering-high-risk", "channel", "segment",
        "monthly", "reactivation",
    },
}  # fmt: skip
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


@pytest.fixture(scope="module")
def single_basis_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The report of data with only subscription events, and of data with only orders (no
    channel either), rendered from the marts' own functions."""
    pages = {}
    for basis, drop in [("subscription", "orders*"), ("orders", "subscription_events*")]:
        raw = tmp_path_factory.mktemp(f"raw_{basis}")
        generate(raw, GeneratorConfig(customers=800, months=14, seed=3))
        for path in raw.iterdir():
            if path.match(drop):
                path.unlink()
            elif basis == "orders" and path.match("orders*"):
                pl.read_csv(path, infer_schema=False).drop("channel").write_csv(path)
        pages[basis] = tmp_path_factory.mktemp(f"report_{basis}") / "churn_report.html"
        pages[basis].write_text(render_built(Built(raw)), encoding="utf-8")
    return pages


def render_built(built: Built) -> str:
    tables = DuckDBTables(built.conn)
    published = built.published_tables()
    observation = read_observation(tables)
    inputs = ReportInputs(
        {name: published[name] for name in published},
        reconciliation(tables),
        quarantine_reasons(tables),
        observation.as_of,
        observation.last_complete_month,
        built.settings.timezone,
    )
    return render(inputs)


def _report(run: Path) -> str:
    return (run / "marts" / "churn_report.html").read_text(encoding="utf-8")


def _basis_section(page: str, basis: str) -> str:
    return page.split(f'<section class="basis" id="{basis}">')[1].split("</section>")[0]


def test_the_report_is_self_contained_and_has_every_section(run: Path) -> None:
    page = _report(run)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page), "no external resources"
    assert "@import" not in page and not re.search(r"url\((?!#)", page)  # only internal clip paths
    assert not re.search(r"""href="(?!data:|#)""", page)  # images inline, links within the page
    for basis in BASES:
        section = _basis_section(page, basis)
        present = set(re.findall(r'data-section="([a-z-]+)"', section))
        assert present == SECTIONS[basis], basis
        # every figure has a title and either its chart or a note saying why there is none
        figures = re.findall(r'<figure class="chart".*?</figure>', section, flags=re.S)
        assert figures and all(re.search(r"<h3>[^<]+</h3>", f) for f in figures)
        assert all((f.count("<svg") == 1) != ('class="empty"' in f) for f in figures)
    assert 'id="data-quality"' in page
    visible = re.sub(r"<[^>]+>", " ", page.split("<body>", 1)[1])
    assert len(re.findall(r"\bas of\b", visible, flags=re.I)) == 1  # stated once, at the top
    assert page.index('class="as-of"') < page.index('id="summary"')


def _html_table_after(page: str, marker: str) -> list[list[str]]:
    table = page.split(marker, 1)[1].split("<table>", 1)[1].split("</table>", 1)[0]
    return [
        [html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)] for row in re.findall(r"<tr>(.*?)</tr>", table)
    ]


def test_the_report_numbers_are_the_published_tables_numbers(run: Path) -> None:
    page = _report(run)
    with duckdb.connect(str(run / "warehouse.duckdb"), read_only=True) as conn:
        raw = {
            s: conn.sql(f"select count(*) from raw.{s}").fetchall()[0][0]
            + conn.sql("select count(*) from raw.csv_rejects where source = $s", params={"s": s}).fetchall()[0][0]
            for s in ("orders", "subscription_events", "fx_rates")
        }
        quarantined = dict(conn.sql("select source, count(*) from marts.quarantine group by 1").fetchall())
    rows = _html_table_after(page, 'id="data-quality"')
    assert any("," in cell for row in rows for cell in row[1:])  # thousands separators
    quality = {row[0]: [int(v.replace(",", "")) for v in row[1:]] for row in rows if row}
    for source, count in raw.items():
        assert quality[source][0] == count
        assert quality[source][2] == quarantined.get(source, 0)
        assert quality[source][1] + quality[source][2] == count

    channels = pl.read_parquet(run / "marts" / "churn_by_channel.parquet").filter(pl.col("basis") == "subscription")
    shown = {row[0]: row for row in _html_table_after(page, 'id="subscription-channel"') if row}
    assert set(shown) == set(channels["channel"])
    for row in channels.iter_rows(named=True):
        assert shown[row["channel"]][1] == f"{row['customers']:,}"
        assert shown[row["channel"]][2] == f"{row['monthly_churn_rate'] * 100:.1f} %"

    flagged = pl.read_parquet(run / "marts" / "high_risk_months.parquet").filter(pl.col("is_high_risk"))
    assert flagged.filter(pl.col("basis") == "subscription")["months_since_signup"].to_list() == [5]  # planted
    for row in flagged.iter_rows(named=True):
        section = _basis_section(page, row["basis"])
        assert f"Month {row['months_since_signup']}: {row['hazard'] * 100:.1f} % of the {row['at_risk']:,} customers" in section

    # the customers about to enter month 5: their count and MRR, in the section and the summary
    entering = pl.read_parquet(run / "marts" / "customers_entering_high_risk.parquet").filter(pl.col("basis") == "subscription")
    assert entering.height > 0
    stake = f"USD {entering['current_mrr'].sum():,.0f}"
    block = page.split('id="subscription-entering-high-risk"')[1].split("</div>\n")[0]
    assert f"<strong>{entering.height:,} customers</strong>, {stake} of MRR" in block
    summary = page.split('id="summary"')[1].split("</section>")[0]
    assert f"{entering.height:,} customers holding {stake} of MRR" in summary

    # the summary's SaaS metrics: the latest month's values and those 12 months earlier
    monthly = pl.read_parquet(run / "marts" / "churn_by_month.parquet").filter(pl.col("basis") == "subscription").sort("month")
    latest, year_ago = monthly.row(-1, named=True), monthly.row(-13, named=True)
    subscription_cards = summary.split("<h3>Subscription basis")[1].split("<h3>")[0]
    cards = dict(re.findall(r'<div class="label">([^<]+)</div><div class="value">([^<]+)', subscription_cards))
    assert cards["MRR"] == f"USD {latest['mrr_end']:,.0f}" and cards["ARR"] == f"USD {latest['arr']:,.0f}"
    assert cards["Customers"] == f"{latest['customers_end']:,}"
    assert cards["Quick Ratio"] == f"{latest['quick_ratio']:,.2f}"
    assert cards["Customer churn"] == f"{latest['customer_churn_rate'] * 100:.1f} %"
    assert f"12 months earlier: USD {year_ago['mrr_end']:,.0f}" in subscription_cards


def test_the_dagster_ui_shows_the_reports_own_key_charts(run: Path) -> None:
    page = _report(run)
    charts = {key: value for key, value in REPORT_METADATA.items() if key.startswith("chart: ")}
    assert sorted(charts) == ["chart: cohort-heatmap", "chart: hazard", "chart: monthly"]
    for key, value in charts.items():
        section = key.removeprefix("chart: ")
        match = re.fullmatch(rf"!\[{section}\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", value.md_str)
        svg = base64.b64decode(match.group(1)).decode()
        # the subscription basis's chart of that section, byte for byte
        figure = page.split(f'id="subscription-{section}">')[1]
        assert svg.startswith("<svg") and figure.split('">', 1)[1].startswith(svg + "</div><figcaption>")


def test_a_single_basis_report_shows_only_that_basis_and_says_what_is_missing(single_basis_reports) -> None:
    subscription = single_basis_reports["subscription"].read_text(encoding="utf-8")
    assert 'id="subscription"' in subscription and 'id="orders"' not in subscription
    assert 'href="#orders"' not in subscription
    orders = single_basis_reports["orders"].read_text(encoding="utf-8")
    assert 'id="orders"' in orders and 'id="subscription"' not in orders and 'href="#subscription"' not in orders
    channel = orders.split('id="orders-channel"')[1].split("</figure>")[0]
    assert "<svg" not in channel and "No channel data" in channel
    reactivation_and_all = orders.split('id="orders-reactivation"')[1].split("</figure>")[0]
    assert "unknown" not in reactivation_and_all  # one channel: only "all customers"


def _browser():
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
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
    return playwright, browser


# what the browser test reads off each page, in the page
PAGE_FACTS = r"""() => {
  const figures = [...document.querySelectorAll("figure.chart")];
  const charts = [...document.querySelectorAll("svg")].filter(s => !s.closest("svg.spark") && !s.parentElement.closest("svg"));
  return {
    untitled: figures.filter(f => !(f.querySelector("h3")?.innerText.trim())).length,
    chartsOutsideTitledFigures: charts.filter(s => !s.classList.contains("spark") && !s.closest("figure.chart")?.querySelector("h3")).length,
    drawnAndNoted: figures.filter(f => (f.querySelector(".plot svg") !== null) === (f.querySelector(".empty") !== null)).length,
    flatCharts: figures.map(f => f.querySelector(".plot svg")).filter(s => s && s.getBoundingClientRect().height < 80).length,
    brokenLinks: [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute("href").slice(1)).filter(id => !document.getElementById(id)),
    bases: [...document.querySelectorAll("section.basis")].map(s => s.id),
    asOf: (document.body.innerText.match(/\bas of\b/gi) || []).length,
    asOfFirst: document.querySelector(".as-of").compareDocumentPosition(document.querySelector("section")) === Node.DOCUMENT_POSITION_FOLLOWING,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    figures: figures.length,
  };
}"""


def _visit(browser, url: str, width: int, shot: Path) -> tuple[dict, list[str], list[str]]:
    """The page's facts, its console errors and every request it made; a full-page screenshot."""
    errors, requests = [], []
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url, wait_until="load")
    facts = page.evaluate(PAGE_FACTS)
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    return facts, errors, requests


@pytest.mark.slow
def test_the_report_in_a_headless_browser(run: Path, single_basis_reports) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium; apt-get install chromium)")
    pages = {"both": run / "marts" / "churn_report.html", **{f"{b}_only": p for b, p in single_basis_reports.items()}}
    expected_bases = {"both": ["subscription", "orders"], "subscription_only": ["subscription"], "orders_only": ["orders"]}
    ARTIFACTS.mkdir(exist_ok=True)
    playwright, browser = _browser()
    try:
        for name, path in pages.items():
            for width in (1400, 700):
                shot = ARTIFACTS / f"churn_report_{name}_{width}.png"
                facts, errors, requests = _visit(browser, path.as_uri(), width, shot)
                where = f"{name} at {width} px"
                assert errors == [] and requests == [path.as_uri()], where  # the page itself, nothing else
                assert facts["figures"] >= 8 and facts["untitled"] == 0 and facts["chartsOutsideTitledFigures"] == 0, where
                assert facts["drawnAndNoted"] == 0 and facts["flatCharts"] == 0, where
                assert facts["brokenLinks"] == [], where
                assert facts["bases"] == expected_bases[name], where
                assert facts["asOf"] == 1 and facts["asOfFirst"], where
                assert facts["overflow"] <= 0, where  # wide charts and tables scroll inside the page
                assert shot.stat().st_size > 50_000, where
    finally:
        browser.close()
        playwright.stop()


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


def test_a_long_history_heatmap_shows_every_value_cohort_size_and_a_scale_that_separates_them() -> None:
    cohorts = [date(2020 + m // 12, m % 12 + 1, 1) for m in range(30)]
    frame = pl.DataFrame(
        {
            "basis": "orders",
            "cohort_month": [c for i, c in enumerate(cohorts) for _ in range(30 - i)],
            "months_since_signup": [k for i in range(30) for k in range(30 - i)],
            "cohort_size": [1000 + i for i in range(30) for _ in range(30 - i)],
            "retention_rate": [1.0 if k == 0 else 0.05 + 0.2 / k for i in range(30) for k in range(30 - i)],
        }
    )
    svg = retention_heatmap(frame, "orders")
    assert re.findall(r'<text class="cohort"[^>]*>([^<]+)</text>', svg) == [c.strftime("%Y-%m") for c in cohorts]
    assert re.findall(r'<text class="k"[^>]*>([^<]+)</text>', svg) == [str(k) for k in range(30)]
    values = re.findall(r'<text class="v"[^>]*>([^<]+)</text>', svg)
    assert len(values) == frame.height  # a value in every observed cell (465 of them)
    assert values[:2] == ["100", "25"]  # the first cohort's months 0 and 1
    titles = re.findall(r"<title>([^<]+)</title>", svg)
    assert titles[:2] == ["2020-01, month 0: 100.0 % of the cohort", "2020-01, month 1: 25.0 % of the cohort"]
    assert re.findall(r'<text class="size"[^>]*>([^<]+)</text>', svg) == [f"{1000 + i:,}" for i in range(30)]
    # after month 0 the values run from 5.7 % to 25 %: the scale spans those, month 0 is clipped
    assert re.search(r'data-vmin="([^"]+)" data-vmax="([^"]+)"', svg).groups() == ("0", "0.25")
    assert re.findall(r'<text class="key"[^>]*>([^<]+)</text>', svg) == ["25 %", "0 %"]
    fills = re.findall(r'<rect x="[^"]+" y="[^"]+" width="34" height="22" fill="(#[0-9a-f]+)"', svg)
    assert len(fills) == frame.height and len(set(fills[1:30])) >= 10  # months 1-29 of a cohort look different


def test_charts_give_way_to_a_note_when_there_is_nothing_to_compare_or_show() -> None:
    one_channel = pl.DataFrame(
        {"channel": ["unknown"], "customers": [10], "rate_ratio_vs_others": [None], "rate_ratio_ci_low": [None],
         "rate_ratio_ci_high": [None]}
    )  # fmt: skip
    assert rate_ratio_chart(one_channel, "channel") is None
    nobody_back = pl.DataFrame(
        {"basis": ["orders"] * 2, "dimension": ["all", "channel"], "value": ["all", "ads"],
         **{f"returned_within_{w}d_share": [0.0, 0.0] for w in (30, 60, 90)}}
    )  # fmt: skip
    assert reactivation_chart(nobody_back, "orders") is None


def test_a_rate_ratio_of_zero_sits_at_the_axis_edge_with_its_label() -> None:
    frame = pl.DataFrame(
        {"value": ["basic", "pro", "annual"], "customers": [500, 300, 40], "rate_ratio_vs_others": [1.3, 0.9, 0.0],
         "rate_ratio_ci_low": [1.0, 0.7, None], "rate_ratio_ci_high": [1.6, 1.2, None]}
    )  # fmt: skip
    ax = rate_ratio_chart(frame, "value").axes[0]
    left = ax.get_xlim()[0]
    assert 0 < left < 0.7
    [marker] = [line for line in ax.lines if line.get_marker() == "<"]
    assert list(marker.get_xdata()) == [left]
    assert [t.get_text() for t in ax.texts] == ["0: no churn"]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "annual, n=40"


def _drawn_boxes(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def test_hazard_chart_marks_untested_months_clips_visibly_and_keeps_the_legend_off_the_bars() -> None:
    frame = pl.DataFrame(
        {
            "basis": "subscription",
            "months_since_signup": list(range(8)),
            "hazard": [0.05, 0.05, 0.05, 0.05, 0.15, 0.05, 0.05, 0.60],
            "baseline_hazard": [0.05] * 7 + [None],
            "p_value": [0.5, 0.5, 0.5, 0.5, 0.001, 0.5, 0.5, None],
            "is_high_risk": [False] * 4 + [True] + [False] * 3,
        }
    )
    fig = hazard_chart(frame, "subscription")
    ax = fig.axes[0]
    renderer = _drawn_boxes(fig)
    hatched = [c for c in ax.collections if c.get_hatch()]
    assert len(hatched) == 1 and len(hatched[0].get_paths()) == 1  # month 7, not tested
    top = ax.get_ylim()[1]
    assert top == pytest.approx(0.15 * 1.25)  # fits the tested months; month 7 runs past it
    assert {t.get_text() for t in ax.texts} == {"high risk", "▲ 60 %"}
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.y0 >= ax.get_window_extent(renderer).y1 - 1  # above the plot, never over a bar


def test_monthly_chart_mrr_from_zero_plain_money_and_a_net_movement_marker() -> None:
    months = [date(2024, m, 1) for m in range(1, 7)]
    frame = pl.DataFrame(
        {
            "basis": "subscription",
            "month": months,
            "mrr_end": [2.0e6, 2.1e6, 2.2e6, 2.25e6, 2.3e6, 2.4e6],
            "new_mrr": [1.0e5] * 6,
            "expansion_mrr": [2.0e4] * 6,
            "reactivation_mrr": [1.0e4] * 6,
            "contraction_mrr": [5.0e3] * 6,
            "churned_mrr": [4.0e4, 4.0e4, 4.0e4, 9.0e4, 8.0e4, 3.0e4],
            "customer_churn_rate": [0.02, 0.03, 0.025, 0.05, 0.04, 0.02],
        }
    )
    fig = monthly_chart(frame, "subscription", BenchmarkBands(), "EUR")
    level, movements, _ = fig.axes[:3]
    _drawn_boxes(fig)
    assert level.get_ylim()[0] == 0 and level.get_ylabel() == "MRR (EUR)"
    assert level.yaxis.get_offset_text().get_text() == ""  # no 1e6 offset label
    assert any(t.get_text() == "2,000,000" for t in level.get_yticklabels())
    [net] = [line for line in movements.lines if line.get_marker() == "D"]
    assert list(net.get_ydata()) == pytest.approx([85_000, 85_000, 85_000, 35_000, 45_000, 95_000])
    colours = {c.get_label(): tuple(c.get_facecolor()[0]) for c in movements.collections}
    assert len(set(colours.values())) == 5  # new, expansion, reactivation, contraction, churned apart
