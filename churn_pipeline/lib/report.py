"""The churn report: one self-contained HTML file (inline SVG charts, no scripts, no network)
drawn from the published tables, so its numbers are the tables' numbers."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import date, datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from churn_pipeline.lib.churn_tables import BenchmarkBands  # noqa: E402
from churn_pipeline.lib.table_docs import TABLES_BY_NAME  # noqa: E402

# margins are set per chart in inches: a layout engine measured every label on every draw
# and took half the report's time
plt.rcParams.update(
    {
        "figure.constrained_layout.use": False,
        "svg.fonttype": "none",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "svg.hashsalt": "churn_pipeline",
    }
)  # fixed ids: same tables, same bytes
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


def _svg(fig: plt.Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def svg_markdown(svg: str, alt: str) -> str:
    """A chart's SVG as a markdown image the Dagster UI shows inline (it allows data: images)."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"


def _margins(fig: plt.Figure, left: float, bottom: float, right: float = 0.2, top: float = 0.2, **spacing: float) -> None:
    """Fixed margins in inches (labels are a known size: 9 pt text, month or category names)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height, **spacing)


def _tick_step(count: int, most: int) -> int:
    """Label every n-th row or column so at most `most` labels show (each tick costs drawing time)."""
    return -(-count // most) if count > most else 1


def _label_inches(labels: list[str]) -> float:
    """Room for the longest y tick label at 9 pt."""
    return 0.25 + 0.07 * max((len(str(label)) for label in labels), default=4)


def _bars(
    ax: plt.Axes,
    x: np.ndarray,
    height: np.ndarray,
    bottom: np.ndarray | float = 0.0,
    width: float = 0.8,
    horizontal: bool = False,
    **style,
) -> None:
    """Bars as one collection, like `ax.bar` / `ax.barh` draw them but one artist instead of a
    Rectangle per bar (the monthly chart drew 120 of them); a NaN height draws no bar."""
    x = np.asarray(x, dtype=float)
    low = np.broadcast_to(np.asarray(bottom, dtype=float), x.shape)
    high = low + np.nan_to_num(np.asarray(height, dtype=float))
    side_a, side_b = x - width / 2, x + width / 2
    corners = (
        [(low, side_a), (high, side_a), (high, side_b), (low, side_b)]
        if horizontal
        else [(side_a, low), (side_a, high), (side_b, high), (side_b, low)]
    )
    bars = PolyCollection(np.stack([np.column_stack(corner) for corner in corners], axis=1), linewidths=0, **style)
    (bars.sticky_edges.x if horizontal else bars.sticky_edges.y).append(0)  # no margin below the baseline, as ax.bar
    ax.add_collection(bars)


def _floats(series: pl.Series) -> np.ndarray:
    """A column as floats, nulls as NaN (matplotlib leaves gaps there)."""
    return series.cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value * 100:.{digits}f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:,.{digits}f}"


# --- charts -------------------------------------------------------------------------------


def retention_heatmap(cohort_retention: pl.DataFrame, basis: str, value: str = "retention_rate") -> plt.Figure | None:
    frame = cohort_retention.filter(pl.col("basis") == basis)
    if frame.is_empty():
        return None
    cohorts = sorted(frame["cohort_month"].unique())
    months = int(frame["months_since_signup"].max()) + 1
    grid = np.full((len(cohorts), months), np.nan)
    row = {c: i for i, c in enumerate(cohorts)}
    for cohort, k, v in frame.select("cohort_month", "months_since_signup", value).iter_rows():
        grid[row[cohort], k] = np.nan if v is None else v
    fig, ax = plt.subplots(figsize=(min(2 + 0.42 * months, 12), 1 + 0.28 * len(cohorts)))
    _margins(fig, left=1.15, bottom=0.5, right=1.0, top=0.1)
    vmax = 1.0 if value == "retention_rate" else max(1.0, float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0)
    image = ax.imshow(grid, aspect="auto", cmap="Blues", vmin=0, vmax=vmax, interpolation="none")
    if months <= 13 and len(cohorts) <= 24:  # numbers in cells while they stay legible (and cheap to draw)
        for (i, k), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(
                    k, i, f"{v * 100:.0f}", ha="center", va="center", fontsize=6.5, color="white" if v > 0.6 * vmax else "black"
                )
    rows = range(0, len(cohorts), _tick_step(len(cohorts), 24))
    ax.set_yticks(rows, [cohorts[i].strftime("%Y-%m") for i in rows])
    ax.set_xticks(range(0, months, _tick_step(months, 13)))
    ax.set_xlabel("months since signup")
    ax.set_ylabel("signup cohort")
    fig.colorbar(image, ax=ax, fraction=0.03, label="share of month 0" if value != "retention_rate" else "share of cohort")
    return fig


def retention_curve_chart(curve: pl.DataFrame, basis: str) -> plt.Figure | None:
    frame = curve.filter(pl.col("basis") == basis).sort("months_since_signup")
    if frame.is_empty():
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    _margins(fig, left=0.75, bottom=0.5)
    k = frame["months_since_signup"].to_numpy()
    ax.fill_between(
        k,
        frame["survival_ci_low"].to_numpy(),
        frame["survival_ci_high"].to_numpy(),
        step="post",
        alpha=0.25,
        color="tab:blue",
        label="95 % band",
    )
    ax.step(k, frame["survival"].to_numpy(), where="post", color="tab:blue", label="survival (Kaplan-Meier)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("months since signup")
    ax.set_ylabel("share not yet churned")
    ax.legend(frameon=False)
    return fig


def hazard_chart(high_risk: pl.DataFrame, basis: str) -> plt.Figure | None:
    frame = high_risk.filter(pl.col("basis") == basis).sort("months_since_signup")
    if frame.is_empty():
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    _margins(fig, left=0.75, bottom=0.5)
    k = frame["months_since_signup"].to_numpy()
    flagged = frame["is_high_risk"].fill_null(False).to_numpy()
    _bars(ax, k, frame["hazard"].to_numpy(), facecolors=np.where(flagged, "tab:red", "tab:gray"), label="hazard")
    ax.plot(k, _floats(frame["baseline_hazard"]), color="black", lw=1, marker=".", label="baseline from neighbouring months")
    for month in k[flagged]:
        ax.annotate(
            "high risk",
            (month, frame.filter(pl.col("months_since_signup") == month)["hazard"].item()),
            ha="center",
            va="bottom",
            color="tab:red",
            fontsize=8,
        )
    ax.set_xlabel("months since signup")
    ax.set_ylabel("share churning in the month")
    ax.legend(frameon=False)
    return fig


def rate_ratio_chart(frame: pl.DataFrame, label: str) -> plt.Figure | None:
    if frame.is_empty():
        return None
    frame = frame.sort("rate_ratio_vs_others", nulls_last=True)
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.3 * frame.height))
    _margins(fig, left=_label_inches(frame[label].to_list()), bottom=0.5, top=0.1)
    y = np.arange(frame.height)
    ratio = _floats(frame["rate_ratio_vs_others"])
    low = _floats(frame["rate_ratio_ci_low"])
    high = _floats(frame["rate_ratio_ci_high"])
    ax.errorbar(ratio, y, xerr=[np.nan_to_num(ratio - low), np.nan_to_num(high - ratio)], fmt="o", color="tab:blue", capsize=3)
    ax.axvline(1, color="black", lw=0.8)
    ax.set_yticks(y, frame[label].to_list())
    ax.set_xscale("log")
    # plain tick labels: the log scale's default 10^k labels start matplotlib's slow mathtext parser
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    finite = np.concatenate([low, high, ratio])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size:
        ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8) if finite.min() / 1.5 <= t <= finite.max() * 1.5]
        ax.set_xticks(ticks)
    ax.set_xlabel("monthly churn rate vs all others (rate ratio, 95 % interval, log scale)")
    return fig


def price_change_chart(changes: pl.DataFrame) -> plt.Figure | None:
    if changes.is_empty():
        return None
    labels = [
        f"{p} {m:%Y-%m}\n{kind.replace('_', ' ')}"
        for p, m, kind in changes.select("plan", "change_month", "change_kind").iter_rows()
    ]
    x = np.arange(changes.height)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * changes.height), 3))
    _margins(fig, left=0.75, bottom=0.6)
    for offset, column, color, name in [
        (-0.3, "churn_rate_before", "tab:gray", "affected, before"),
        (-0.1, "churn_rate_after", "tab:red", "affected, after"),
        (0.1, "unaffected_churn_rate_before", "lightsteelblue", "other plans, before"),
        (0.3, "unaffected_churn_rate_after", "tab:blue", "other plans, after"),
    ]:
        _bars(ax, x + offset, _floats(changes[column]), width=0.2, facecolors=color, label=name)
    ax.set_xticks(x, labels)
    ax.set_ylabel("monthly churn rate")
    ax.legend(frameon=False, fontsize=7, ncols=2)
    return fig


def monthly_chart(monthly: pl.DataFrame, basis: str, bands: BenchmarkBands) -> plt.Figure | None:
    frame = monthly.filter(pl.col("basis") == basis).sort("month")
    if frame.is_empty():
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    _margins(fig, left=0.95, bottom=0.75, right=0.85, hspace=0.08)
    months = frame["month"].to_list()
    x = np.arange(len(months))
    if basis == "subscription":
        bottom_pos = np.zeros(len(x))
        for column, color in [("new_mrr", "tab:green"), ("expansion_mrr", "yellowgreen"), ("reactivation_mrr", "tab:olive")]:
            values = frame[column].fill_null(0).to_numpy()
            _bars(top, x, values, bottom_pos, facecolors=color, label=column.replace("_", " "))
            bottom_pos += values
        bottom_neg = np.zeros(len(x))
        for column, color in [("contraction_mrr", "tab:orange"), ("churned_mrr", "tab:red")]:
            values = -frame[column].fill_null(0).to_numpy()
            _bars(top, x, values, bottom_neg, facecolors=color, label=column.replace("_", " "))
            bottom_neg += values
        top.set_ylabel("MRR movement")
        twin = top.twinx()
        twin.plot(x, _floats(frame["mrr_end"]), color="black", lw=1.2, label="MRR at month end")
        twin.set_ylabel("MRR")
        twin.legend(frameon=False, loc="upper left", fontsize=7)
    else:
        new = frame["new_customer_revenue"].fill_null(0).to_numpy()
        _bars(top, x, new, facecolors="tab:green", label="new customers")
        _bars(
            top,
            x,
            frame["existing_customer_revenue"].fill_null(0).to_numpy(),
            new,
            facecolors="tab:blue",
            label="existing customers",
        )
        top.set_ylabel("revenue")
    top.legend(frameon=False, fontsize=7, ncols=3, loc="lower left")
    top.axhline(0, color="black", lw=0.6)
    rate = _floats(frame["customer_churn_rate"])
    limits = [
        0,
        bands.healthy,
        bands.acceptable_while_young,
        bands.typical,
        bands.high,
        max(0.2, float(np.nanmax(rate)) * 1.1 if np.isfinite(rate).any() else 0.2),
    ]
    for (low, high), color in zip(
        zip(limits, limits[1:], strict=False), ["#e3f3e3", "#f0f6dc", "#fbf3d9", "#fbe3d0", "#f8d0d0"], strict=True
    ):
        bottom.axhspan(low, high, color=color, lw=0)
    bottom.plot(x, rate, color="black", marker=".", label="customer churn rate")
    bottom.set_ylim(0, limits[-1])
    bottom.set_ylabel("churned / customers at start")
    bottom.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    step = _tick_step(len(x), 13)
    bottom.set_xticks(x[::step], [m.strftime("%Y-%m") for m in months[::step]], rotation=45, ha="right")
    return fig


def reactivation_chart(reactivation: pl.DataFrame, basis: str) -> plt.Figure | None:
    frame = reactivation.filter((pl.col("basis") == basis) & pl.col("dimension").is_in(["all", "channel"]))
    if frame.is_empty():
        return None
    frame = frame.sort(pl.col("dimension") != "all", "value")
    labels = [("all customers" if d == "all" else v) for d, v in frame.select("dimension", "value").iter_rows()]
    y = np.arange(frame.height)
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.35 * frame.height))
    _margins(fig, left=_label_inches(labels), bottom=0.5, top=0.1)
    for offset, window, color in [(-0.25, 30, "#c6dbef"), (0, 60, "#6baed6"), (0.25, 90, "#2171b5")]:
        _bars(
            ax,
            y + offset,
            _floats(frame[f"returned_within_{window}d_share"]),
            width=0.25,
            horizontal=True,
            facecolors=color,
            label=f"back within {window} days",
        )
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("share of churned customers who came back")
    ax.legend(frameon=False, fontsize=7)
    return fig


# --- the page -----------------------------------------------------------------------------


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


def _figure(section: str, fig: plt.Figure | None, caption: str, extra: str = "", keep: dict[str, str] | None = None) -> str:
    """A chart with its caption; `keep` also collects it as a markdown image (for the Dagster UI)."""
    if fig is None:
        return f'<figure class="chart" data-section="{section}"><p class="empty">No data for this chart.</p><figcaption>{html.escape(caption)}</figcaption></figure>'
    svg = _svg(fig)
    if keep is not None:
        keep[section] = svg_markdown(svg, section)
    plt.close(fig)
    return f'<figure class="chart" data-section="{section}">{svg}<figcaption>{html.escape(caption)}</figcaption>{extra}</figure>'


def _high_risk_text(high_risk: pl.DataFrame, basis: str) -> str:
    flagged = high_risk.filter((pl.col("basis") == basis) & pl.col("is_high_risk").fill_null(False))
    if flagged.is_empty():
        return "<p>No lifetime month stands out from its neighbours.</p>"
    items = "".join(
        f"<li>Month {r['months_since_signup']}: {_pct(r['hazard'])} of the {r['at_risk']:,} customers still there churned, "
        f"{_num(r['lift'], 1)} times what the neighbouring months predict ({_pct(r['baseline_hazard'])}); "
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
        f"<p>{last['month']:%B %Y}: churn {_pct(last['customer_churn_rate'])} ({html.escape(str(last['benchmark_band']))}); "
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
                    {"old_price": _num, "new_price": _num, "lift": _num, "relative_lift": _num, "p_value": lambda v: _num(v, 4)},
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
                    {"monthly_churn_rate": _pct, "rate_ratio_vs_others": _num, "p_value_vs_others": lambda v: _num(v, 4)},
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
