"""The churn report: one self-contained HTML file (inline SVG charts, no scripts, no network)
drawn from the published tables, so its numbers are the tables' numbers."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import polars as pl
from matplotlib.figure import Figure

from churn_pipeline.lib.churn_tables import BenchmarkBands
from churn_pipeline.lib.report_charts import (
    hazard_chart,
    monthly_chart,
    num,
    pct,
    price_change_chart,
    rate_ratio_chart,
    reactivation_chart,
    retention_curve_chart,
    retention_heatmap,
    sparkline,
    svg_markdown,
    to_svg,
)
from churn_pipeline.lib.table_docs import TABLES_BY_NAME

BASES = ("subscription", "orders")
ENTERING_SHOWN = 10  # customers listed in the page; the table has them all


@dataclass(frozen=True)
class ReportInputs:
    tables: dict[str, pl.DataFrame]
    """The published tables, by name."""
    data_quality: pl.DataFrame
    """source, raw_rows, loaded, quarantined."""
    quarantine_reasons: pl.DataFrame
    """source, reason, rows."""
    as_of: datetime | None
    last_complete_month: date | None
    timezone: str
    currency: str = "USD"


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, Decimal) and value == value.to_integral_value()):
        return f"{int(value):,}"
    if isinstance(value, date):
        return f"{value:%Y-%m}" if value.day == 1 and not isinstance(value, datetime) else str(value)
    return str(value)


NUMBER = ' class="num"'  # right-aligned, for cells that hold a number


def _table(frame: pl.DataFrame, formats: dict[str, Callable] | None = None) -> str:
    """An HTML table; integers get thousands separators, other columns their format."""
    formats = formats or {}
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        cells = "".join(
            f"<td{NUMBER if isinstance(v, int | float | Decimal) else ''}>"
            f"{html.escape(formats[c](v) if c in formats else _text(v))}</td>"
            for c, v in row.items()
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _figure(
    section: str,
    basis: str,
    title: str,
    fig: Figure | str | None,
    caption: str,
    empty: str,
    extra: str = "",
    keep: dict[str, str] | None = None,
    natural: bool = False,
) -> str:
    """A titled chart with its caption, or the title with a note saying why there is no chart;
    `keep` also collects the chart as a markdown image (for the Dagster UI). A `natural` chart
    keeps its own size (a heatmap's cell values stay legible) and scrolls in a narrow window."""
    head = f'<figure class="chart" data-section="{section}" id="{basis}-{section}"><h3>{html.escape(title)}</h3>'
    if fig is None:
        return f'{head}<p class="empty">{html.escape(empty)}</p>{extra}</figure>'
    svg = fig if isinstance(fig, str) else to_svg(fig)
    if keep is not None and section not in keep:
        keep[section] = svg_markdown(svg, section)
    plot = "plot natural" if natural else "plot"
    return f'{head}<div class="{plot}">{svg}</div><figcaption>{html.escape(caption)}</figcaption>{extra}</figure>'


def _high_risk_text(high_risk: pl.DataFrame, basis: str) -> str:
    frame = high_risk.filter(pl.col("basis") == basis)
    flagged = frame.filter(pl.col("is_high_risk").fill_null(False))
    untested = frame.filter(pl.col("p_value").is_null())["months_since_signup"].to_list()
    notes = (
        f"<p>Hatched bars were not tested (too thin, too few churns, or inside the inactivity window; "
        f"the table's <code>note</code> says which): months {html.escape(_month_list(untested))}.</p>"
        if untested
        else ""
    )
    if flagged.is_empty():
        return f"<p>No lifetime month stands out from its neighbours.</p>{notes}"
    items = "".join(
        f"<li>Month {r['months_since_signup']}: {pct(r['hazard'])} of the {r['at_risk']:,} customers still there churned, "
        f"{num(r['lift'], 1)} times what the neighbouring months predict ({pct(r['baseline_hazard'])}); "
        f"p = {r['p_value']:.2g} after Holm's correction.</li>"
        for r in flagged.iter_rows(named=True)
    )
    return f"<ul class='high-risk'>{items}</ul>{notes}"


def _month_list(months: list[int]) -> str:
    """0, 1, 2, 5, 7, 8 as `0-2, 5, 7-8`."""
    runs: list[list[int]] = []
    for month in sorted(months):
        if runs and month == runs[-1][-1] + 1:
            runs[-1].append(month)
        else:
            runs.append([month])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _entering(entering: pl.DataFrame, basis: str, currency: str) -> str:
    """Who is about to reach a flagged month: per month, then the customers with the most MRR."""
    frame = entering.filter(pl.col("basis") == basis)
    head = f'<div class="block" data-section="entering-high-risk" id="{basis}-entering-high-risk"><h3>Who reaches a high-risk month next?</h3>'
    if frame.is_empty():
        return f'{head}<p class="empty">No customer is about to enter a high-risk month (none is flagged within their next two months).</p></div>'
    money = basis == "subscription"
    by_month = (
        frame.group_by("entering_month", "entering_lifetime_month")
        .agg(pl.len().alias("customers"), *([pl.col("current_mrr").sum().alias("mrr_at_stake")] if money else []))
        .sort("entering_month")
    )
    stake = f", {currency} {frame['current_mrr'].sum():,.0f} of MRR" if money else ""
    shown = frame.head(ENTERING_SHOWN).select(
        "customer_id", "cohort_month", "channel", "segment", *(["plan", "current_mrr"] if money else []), "entering_month"
    )
    more = (
        f" (the first {ENTERING_SHOWN} of {frame.height:,}; all in <code>marts.customers_entering_high_risk</code>)"
        if frame.height > ENTERING_SHOWN
        else ""
    )
    return (
        f"{head}<p><strong>{frame.height:,} customers</strong>{stake} reach a flagged lifetime month in the next two months: "
        f"the time for extra care is now.</p>"
        f"{_table(by_month, {'mrr_at_stake': lambda v: num(v, 0)})}"
        f"<p>{'Highest MRR first' if money else 'Customers'}{more}:</p>"
        f"{_table(shown, {'current_mrr': lambda v: num(v, 0)})}</div>"
    )


def _latest_month_text(monthly: pl.DataFrame, basis: str) -> str:
    frame = monthly.filter(pl.col("basis") == basis).sort("month")
    if frame.is_empty():
        return ""
    last = frame.row(-1, named=True)
    return (
        f"<p>{last['month']:%B %Y}: churn {pct(last['customer_churn_rate'])} ({html.escape(str(last['benchmark_band']))}); "
        f"3-month trend {html.escape(str(last['trend_3m'] or 'n/a'))}, 6-month trend {html.escape(str(last['trend_6m'] or 'n/a'))}.</p>"
    )


# the summary's cards: label, churn_by_month column, format (`money` takes the currency)
SUBSCRIPTION_CARDS = [
    ("MRR", "mrr_end", "money"),
    ("ARR", "arr", "money"),
    ("ARPA", "arpa", "money"),
    ("Customers", "customers_end", "count"),
    ("Customer churn", "customer_churn_rate", "rate"),
    ("Gross MRR churn", "gross_mrr_churn_rate", "rate"),
    ("Net MRR churn", "net_mrr_churn_rate", "rate"),
    ("Quick Ratio", "quick_ratio", "ratio"),
    ("Net revenue retention (12 months)", "net_revenue_retention_12m", "share"),
    ("Gross revenue retention (12 months)", "gross_revenue_retention_12m", "share"),
    ("LTV", "ltv", "money"),
]
ORDERS_CARDS = [
    ("Customers", "customers_end", "count"),
    ("Customer churn", "customer_churn_rate", "rate"),
    ("Net revenue", "revenue", "money"),
    ("From new customers", "new_customer_revenue", "money"),
    ("From existing customers", "existing_customer_revenue", "money"),
]


def _format(kind: str, value: float | None, currency: str) -> str:
    if value is None:
        return "n/a"
    return {
        "money": lambda v: f"{currency} {v:,.0f}",
        "count": lambda v: f"{v:,.0f}",
        "rate": lambda v: pct(v),
        "share": lambda v: pct(v, 0),
        "ratio": lambda v: num(v, 2),
    }[kind](value)


def _summary(t: dict[str, pl.DataFrame], bases: list[str], currency: str) -> str:
    """The latest complete month's headline metrics per basis, each with its value 12 months
    earlier and a sparkline of the last 13 months, and the findings that call for action."""
    blocks = []
    for basis in bases:
        frame = t["churn_by_month"].filter(pl.col("basis") == basis).sort("month").tail(13)
        if frame.is_empty():
            continue
        last = frame.row(-1, named=True)
        year_ago = frame.row(0, named=True) if frame.height == 13 else None
        cards = []
        for label, column, kind in SUBSCRIPTION_CARDS if basis == "subscription" else ORDERS_CARDS:
            earlier = f"12 months earlier: {_format(kind, year_ago[column], currency)}" if year_ago else "12 months earlier: n/a"
            band = (
                f'<div class="band">{html.escape(last["benchmark_band"])}</div>'
                if column == "customer_churn_rate" and last["benchmark_band"]
                else ""
            )
            cards.append(
                f'<div class="card"><div class="label">{html.escape(label)}</div>'
                f'<div class="value">{html.escape(_format(kind, last[column], currency))}{band}</div>'
                f'<div class="trend">{sparkline(frame[column].to_list())}<span>{html.escape(earlier)}</span></div></div>'
            )
        trend = html.escape(str(last["trend_6m"] or "n/a"))
        blocks.append(
            f"<h3>{basis.capitalize()} basis, {last['month']:%B %Y}</h3>"
            f"<p>Churn trend over 6 months: <strong>{trend}</strong> (the direction matters more than the level).</p>"
            f'<div class="cards">{"".join(cards)}</div>'
        )
    findings = []
    for basis in bases:
        flagged = t["high_risk_months"].filter((pl.col("basis") == basis) & pl.col("is_high_risk").fill_null(False))
        if not flagged.is_empty():
            months = ", ".join(str(m) for m in flagged["months_since_signup"])
            entering = t["customers_entering_high_risk"].filter(pl.col("basis") == basis)
            stake = f" holding {currency} {entering['current_mrr'].sum():,.0f} of MRR" if basis == "subscription" else ""
            findings.append(
                f"<li>{basis.capitalize()}: lifetime month {months} loses customers well above its neighbours "
                f'(<a href="#{basis}-hazard">hazard</a>); {entering.height:,} customers{stake} reach it within two months '
                f'(<a href="#{basis}-entering-high-risk">who</a>).</li>'
            )
    listed = f"<ul class='findings'>{''.join(findings)}</ul>" if findings else "<p>No lifetime month is flagged high-risk.</p>"
    return f'<section id="summary"><h2>Summary</h2>{"".join(blocks)}<h3>Findings</h3>{listed}</section>'


def _basis_section(t: dict[str, pl.DataFrame], basis: str, bands: BenchmarkBands, currency: str, keep: dict | None) -> str:
    unit = "order" if basis == "orders" else "subscription"
    revenue_label = "net order revenue" if basis == "orders" else "MRR"
    channels = t["churn_by_channel"].filter(pl.col("basis") == basis)
    segments = t["churn_by_segment"].filter(pl.col("basis") == basis)
    dimensions = ("segment", "signup_plan", "value_tier") if basis == "subscription" else ("value_tier",)
    segment_figures = "".join(
        _figure(
            "segment",
            f"{basis}-{d}",
            f"Which {d.replace('_', ' ')} churns more than the others?",
            rate_ratio_chart(segments.filter(pl.col("dimension") == d), "value"),
            f"Monthly churn rate of each {d.replace('_', ' ')} (n = customers) divided by that of all the others, with 95 % interval; right of 1 churns more.",
            f"No {d.replace('_', ' ')} data: every customer has the same {d.replace('_', ' ')}, so there is nothing to compare.",
        )
        for d in dimensions
    )
    price = (
        _figure(
            "price-changes",
            basis,
            "Did a price change make customers leave?",
            price_change_chart(t["churn_by_price_change"]),
            "Monthly churn before and after each detected price change, of the customers it affected and of customers on other plans.",
            "No price change was detected in the data.",
            _table(
                t["churn_by_price_change"].select(
                    "plan",
                    "change_month",
                    "change_kind",
                    "old_price",
                    "new_price",
                    "customers_affected",
                    "lift",
                    "relative_lift",
                    "p_value",
                ),
                {"old_price": num, "new_price": num, "lift": num, "relative_lift": num, "p_value": lambda v: num(v, 4)},
            )
            if not t["churn_by_price_change"].is_empty()
            else "",
        )
        if basis == "subscription"
        else ""
    )
    bridge = (
        "How did MRR move, and is churn getting better or worse?"
        if basis == "subscription"
        else "Does revenue come from new or existing customers, and is churn getting better or worse?"
    )
    return f"""
<section class="basis" id="{basis}">
<h2>{basis.capitalize()} basis <small>(customers of {unit}s)</small></h2>
{
        _figure(
            "cohort-heatmap",
            basis,
            "How long does each signup cohort stay?",
            retention_heatmap(t["cohort_retention"], basis),
            "Percent of each cohort still active k months after signup; cohort size on the right. The colour scale spans the values after month 0.",
            "No cohort is observed yet.",
            keep=keep,
            natural=True,
        )
    }
{
        _figure(
            "revenue-heatmap",
            basis,
            f"How much {revenue_label} does each cohort keep?",
            retention_heatmap(t["cohort_retention"], basis, "revenue_retention"),
            f"Cohort {revenue_label} k months after signup as a percent of its month 0; above 100 means expansion.",
            "No cohort revenue is observed yet.",
            natural=True,
        )
    }
{
        _figure(
            "retention-curve",
            basis,
            "What share of customers is still there after k months?",
            retention_curve_chart(t["retention_curve"], basis),
            "All cohorts pooled (Kaplan-Meier), with 95 % band.",
            "No customer is observed yet.",
        )
    }
{
        _figure(
            "hazard",
            basis,
            "Which lifetime month loses the most customers?",
            hazard_chart(t["high_risk_months"], basis),
            "Share of the customers still there who churn in each lifetime month, against the baseline the neighbouring months predict; red bars are high-risk months.",
            "No lifetime month is observed yet.",
            _high_risk_text(t["high_risk_months"], basis),
            keep,
        )
    }
{_entering(t["customers_entering_high_risk"], basis, currency)}
{
        _figure(
            "channel",
            basis,
            "Which acquisition channel churns more than the others?",
            rate_ratio_chart(channels, "channel"),
            "Monthly churn rate of each channel (n = customers) divided by that of all other channels, with 95 % interval; right of 1 churns more.",
            "No channel data: every customer's channel is the same (or unknown), so there is nothing to compare.",
            _table(
                channels.select("channel", "customers", "monthly_churn_rate", "rate_ratio_vs_others", "p_value_vs_others"),
                {"monthly_churn_rate": pct, "rate_ratio_vs_others": num, "p_value_vs_others": lambda v: num(v, 4)},
            )
            if channels.height > 1
            else "",
        )
    }
{segment_figures}
{price}
{
        _figure(
            "monthly",
            basis,
            bridge,
            monthly_chart(t["churn_by_month"], basis, bands, currency),
            f"Complete calendar months. Churn rate on the benchmark bands (healthy up to {bands.healthy:.0%} a month, emergency above {bands.high:.0%}).",
            "No complete month is observed yet.",
            _latest_month_text(t["churn_by_month"], basis),
            keep,
        )
    }
{
        _figure(
            "reactivation",
            basis,
            "How many churned customers come back?",
            reactivation_chart(t["churn_reactivation"], basis),
            "Share of churned customers back within 30, 60 and 90 days (satisfied churn), overall and by channel.",
            "No churned customer came back within 90 days.",
        )
    }
</section>"""


STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 1rem 2rem 3rem; max-width: 1400px; color: #222; line-height: 1.4; }
h1 { margin: .5rem 0 0; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2.5rem; }
h3 { margin: 1.6rem 0 .4rem; font-size: 1.1rem; }
.as-of { color: #444; margin: .3rem 0 .8rem; }
nav { position: sticky; top: 0; background: #fff; padding: .4rem 0; border-bottom: 1px solid #eee; z-index: 1; }
nav a { margin-right: 1rem; white-space: nowrap; }
[id] { scroll-margin-top: 3rem; }
figure { margin: 1.5rem 0; }
.plot svg { display: block; width: 100%; max-width: 1100px; height: auto; }
.plot.natural { overflow-x: auto; }
.plot.natural svg { width: auto; max-width: none; }
figcaption { font-size: .9rem; color: #555; margin-top: .3rem; }
.empty { color: #555; font-style: italic; background: #f6f6f6; padding: .8rem 1rem; border-radius: 4px; }
.table { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; white-space: nowrap; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.high-risk li { color: #a00; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: .6rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .7rem; }
.card .label { font-size: .85rem; color: #555; } .card .value { font-size: 1.4rem; font-weight: 600; white-space: nowrap; }
.card .band { font-size: .8rem; color: #555; }
.card .trend { font-size: .75rem; color: #666; } .card .trend svg { display: block; margin: .2rem 0; }
@media (max-width: 760px) { body { padding: .5rem .8rem 2rem; } .cards { grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); } .card .value { font-size: 1.15rem; } }
"""


def render(inputs: ReportInputs, bands: BenchmarkBands = BenchmarkBands(), key_charts: dict[str, str] | None = None) -> str:
    """The page; `key_charts`, when given, receives the subscription heatmap, hazard and monthly charts as markdown images."""
    t = inputs.tables
    as_of = inputs.as_of.strftime("%Y-%m-%d %H:%M UTC") if inputs.as_of else "n/a"
    through = f"{inputs.last_complete_month:%B %Y}" if inputs.last_complete_month else "n/a"
    bases = [b for b in BASES if not t["cohort_retention"].filter(pl.col("basis") == b).is_empty()]
    sections = "".join(
        _basis_section(t, basis, bands, inputs.currency, key_charts if basis == "subscription" else None) for basis in bases
    )
    links = [
        ("summary", "Summary"),
        *((b, f"{b.capitalize()} basis") for b in bases),
        ("data-quality", "Data quality"),
        ("tables", "Tables"),
    ]
    nav = " ".join(f'<a href="#{target}">{label}</a>' for target, label in links)
    quality = _table(inputs.data_quality)
    reasons = _table(inputs.quarantine_reasons) if not inputs.quarantine_reasons.is_empty() else "<p>No row was quarantined.</p>"
    tables = "".join(f"<li><code>{name}</code>: {html.escape(doc.description)}</li>" for name, doc in TABLES_BY_NAME.items())
    no_data = "" if bases else '<p class="empty">No customer is observed yet: the report has no basis to show.</p>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>Churn report, {html.escape(as_of)}</title>
<style>{STYLE}</style></head><body>
<h1>Churn report</h1>
<p class="as-of">Data as of {html.escape(as_of)}; complete months through {html.escape(through)}, months in {html.escape(inputs.timezone)}; money in {html.escape(inputs.currency)}. Every number comes from the published tables (<code>marts.*</code> and the Parquet files beside this report).</p>
<nav>{nav}</nav>
{no_data}{_summary(t, bases, inputs.currency)}
{sections}
<section id="data-quality" data-section="data-quality">
<h2>Data quality</h2>
<p>Raw rows = loaded + quarantined, for every source (a blocking check). Quarantined rows are in <code>marts.quarantine</code> with file, row and raw values.</p>
{quality}
{reasons}
</section>
<section id="tables"><h2>Tables</h2><ul>{tables}</ul></section>
</body></html>
"""
