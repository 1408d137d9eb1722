"""The churn report: one self-contained HTML file (inline SVG charts, no scripts, no network)
drawn from the published tables, so its numbers are the tables' numbers."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date, datetime

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
    svg_markdown,
    to_svg,
)
from churn_pipeline.lib.table_docs import TABLES_BY_NAME

BASES = ("subscription", "orders")


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


def _table(frame: pl.DataFrame, formats: dict[str, callable] | None = None) -> str:
    formats = formats or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        cells = []
        for column, value in row.items():
            text = formats[column](value) if column in formats else ("" if value is None else str(value))
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(section: str, fig: Figure | None, caption: str, extra: str = "", keep: dict[str, str] | None = None) -> str:
    """A chart with its caption; `keep` also collects it as a markdown image (for the Dagster UI)."""
    if fig is None:
        return f'<figure class="chart" data-section="{section}"><p class="empty">No data for this chart.</p><figcaption>{html.escape(caption)}</figcaption></figure>'
    svg = to_svg(fig)
    if keep is not None:
        keep[section] = svg_markdown(svg, section)
    return f'<figure class="chart" data-section="{section}">{svg}<figcaption>{html.escape(caption)}</figcaption>{extra}</figure>'


def _high_risk_text(high_risk: pl.DataFrame, basis: str) -> str:
    flagged = high_risk.filter((pl.col("basis") == basis) & pl.col("is_high_risk").fill_null(False))
    if flagged.is_empty():
        return "<p>No lifetime month stands out from its neighbours.</p>"
    items = "".join(
        f"<li>Month {r['months_since_signup']}: {pct(r['hazard'])} of the {r['at_risk']:,} customers still there churned, "
        f"{num(r['lift'], 1)} times what the neighbouring months predict ({pct(r['baseline_hazard'])}); "
        f"p = {r['p_value']:.2g} after Holm's correction.</li>"
        for r in flagged.iter_rows(named=True)
    )
    return f"<ul class='high-risk'>{items}</ul>"


def _latest_month_text(monthly: pl.DataFrame, basis: str) -> str:
    frame = monthly.filter(pl.col("basis") == basis).sort("month")
    if frame.is_empty():
        return ""
    last = frame.row(-1, named=True)
    return (
        f"<p>{last['month']:%B %Y}: churn {pct(last['customer_churn_rate'])} ({html.escape(str(last['benchmark_band']))}); "
        f"3-month trend {html.escape(str(last['trend_3m'] or 'n/a'))}, 6-month trend {html.escape(str(last['trend_6m'] or 'n/a'))}.</p>"
    )


def render(inputs: ReportInputs, bands: BenchmarkBands = BenchmarkBands(), key_charts: dict[str, str] | None = None) -> str:
    """The page; `key_charts`, when given, receives the subscription heatmap, hazard and monthly charts as markdown images."""
    t = inputs.tables
    as_of = inputs.as_of.strftime("%Y-%m-%d %H:%M UTC") if inputs.as_of else "n/a"
    through = f"{inputs.last_complete_month:%B %Y}" if inputs.last_complete_month else "n/a"
    stamp = f"as of {as_of} (complete months through {through}, months in {inputs.timezone})"
    parts = []
    for basis in BASES:
        if t["cohort_retention"].filter(pl.col("basis") == basis).is_empty():
            continue
        unit = "order" if basis == "orders" else "subscription"
        keep = key_charts if basis == "subscription" else None
        revenue_label = "net order revenue" if basis == "orders" else "MRR"
        segments = t["churn_by_segment"].filter(pl.col("basis") == basis)
        segment_figures = "".join(
            _figure(
                "segment",
                rate_ratio_chart(segments.filter(pl.col("dimension") == d), "value"),
                f"Churn by {d.replace('_', ' ')} vs all other groups ({basis}), rate ratio with 95 % interval, {stamp}.",
            )
            for d in segments["dimension"].unique(maintain_order=True).to_list()
        ) or _figure("segment", None, f"Churn by segment ({basis}), {stamp}.")
        price = (
            _figure(
                "price-changes",
                price_change_chart(t["churn_by_price_change"]),
                f"Monthly churn before and after each detected price change, against customers on other plans, {stamp}.",
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
                ),
            )
            if basis == "subscription"
            else ""
        )
        parts.append(f"""
<section class="basis" id="{basis}">
<h2>{basis.capitalize()} basis <small>(customers of {unit}s)</small></h2>
{
            _figure(
                "cohort-heatmap",
                retention_heatmap(t["cohort_retention"], basis),
                f"Share of each signup cohort active k months after signup ({basis}), {stamp}.",
                keep=keep,
            )
        }
{
            _figure(
                "cohort-heatmap",
                retention_heatmap(t["cohort_retention"], basis, "revenue_retention"),
                f"Cohort {revenue_label} k months after signup as a share of month 0 ({basis}), {stamp}.",
            )
        }
{
            _figure(
                "retention-curve",
                retention_curve_chart(t["retention_curve"], basis),
                f"Share of customers not yet churned by lifetime month, all cohorts pooled, with 95 % band ({basis}), {stamp}.",
            )
        }
{
            _figure(
                "hazard",
                hazard_chart(t["high_risk_months"], basis),
                f"Churn hazard by lifetime month against the baseline of neighbouring months; red = high-risk month ({basis}), {stamp}.",
                _high_risk_text(t["high_risk_months"], basis),
                keep,
            )
        }
{
            _figure(
                "channel",
                rate_ratio_chart(t["churn_by_channel"].filter(pl.col("basis") == basis), "channel"),
                f"Churn by acquisition channel vs all other channels, rate ratio with 95 % interval ({basis}), {stamp}.",
                _table(
                    t["churn_by_channel"]
                    .filter(pl.col("basis") == basis)
                    .select("channel", "customers", "monthly_churn_rate", "rate_ratio_vs_others", "p_value_vs_others"),
                    {"monthly_churn_rate": pct, "rate_ratio_vs_others": num, "p_value_vs_others": lambda v: num(v, 4)},
                ),
            )
        }
{segment_figures}
{price}
{
            _figure(
                "monthly",
                monthly_chart(t["churn_by_month"], basis, bands),
                f"Monthly {'MRR bridge' if basis == 'subscription' else 'revenue from new vs existing customers'} and customer churn rate on benchmark bands (green <= {bands.healthy:.0%}, red > {bands.high:.0%}) ({basis}), {stamp}.",
                _latest_month_text(t["churn_by_month"], basis),
                keep,
            )
        }
{
            _figure(
                "reactivation",
                reactivation_chart(t["churn_reactivation"], basis),
                f"Share of churned customers back within 30, 60 and 90 days (satisfied churn), overall and by channel ({basis}), {stamp}.",
            )
        }
</section>""")
    quality = _table(inputs.data_quality)
    reasons = _table(inputs.quarantine_reasons) if not inputs.quarantine_reasons.is_empty() else "<p>No row was quarantined.</p>"
    tables = "".join(f"<li><code>{name}</code>: {html.escape(doc.description)}</li>" for name, doc in TABLES_BY_NAME.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>Churn report, {html.escape(as_of)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; color: #222; }}
h1 {{ margin-bottom: 0; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2.5rem; }}
figure {{ margin: 1.5rem 0; }} figure svg {{ max-width: 100%; height: auto; }}
figcaption {{ font-size: .9rem; color: #555; margin-top: .3rem; }}
table {{ border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }}
td, th {{ border: 1px solid #ddd; padding: 2px 8px; text-align: right; }} th {{ background: #f4f4f4; }}
td:first-child, th:first-child {{ text-align: left; }} .high-risk li {{ color: #a00; }}
</style></head><body>
<h1>Churn report</h1>
<p>{html.escape(stamp[0].upper() + stamp[1:])}. Every number comes from the published tables (<code>marts.*</code> and the Parquet files beside this report).</p>
<nav><a href="#subscription">Subscription</a> · <a href="#orders">Orders</a> · <a href="#data-quality">Data quality</a></nav>
{"".join(parts)}
<section id="data-quality" data-section="data-quality">
<h2>Data quality</h2>
<p>Raw rows = loaded + quarantined, for every source (a blocking check). Quarantined rows are in <code>marts.quarantine</code> with file, row and raw values.</p>
{quality}
{reasons}
</section>
<section id="tables"><h2>Tables</h2><ul>{tables}</ul></section>
</body></html>
"""
