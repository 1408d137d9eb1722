"""The report's charts: matplotlib figures drawn from the published tables, rendered as inline SVG."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from churn_pipeline.lib.churn_tables import BenchmarkBands  # noqa: E402

# margins are set per chart in inches: a layout engine measured every label on every draw
# and took half the report's time
plt.rcParams.update(
    {
        "figure.constrained_layout.use": False,
        "svg.fonttype": "none",
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "svg.hashsalt": "churn_pipeline",
    }
)  # fixed ids: same tables, same bytes


def to_svg(fig: plt.Figure) -> str:
    """The figure as an inline SVG element; the figure is closed."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
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
    """Room for the longest y tick label at 10 pt."""
    return 0.3 + 0.085 * max((len(str(label)) for label in labels), default=4)


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


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value * 100:.{digits}f} %"


def num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:,.{digits}f}"


WIDTH = 8.5  # inches: the page scales charts to its width (at most 1100 px; in a 700 px window about 0.8x)
# colours a reader can tell apart, also in the legend: movements of MRR, and tested vs not
COLOURS = {
    "new": "#2ca02c",
    "expansion": "#17becf",
    "reactivation": "#9467bd",
    "contraction": "#ff7f0e",
    "churned": "#d62728",
    "existing": "#1f77b4",
    "tested": "#7f8c9a",
    "flagged": "#d62728",
}


def thousands(axis: matplotlib.axis.Axis, prefix: str = "") -> None:
    """Plain numbers with thousands separators: no `1e6` offset label."""
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{prefix}{v:,.0f}"))


def _legend_above(ax: plt.Axes, columns: int = 4, **options) -> None:
    """The legend in the margin above the plot, where it cannot cover a bar or a line."""
    ax.legend(frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=columns, borderaxespad=0.2, **options)


def _legend_right(ax: plt.Axes) -> None:
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _colour_scale(values: np.ndarray) -> tuple[float, float]:
    """The heatmap's colour range: the values after month 0 (month 0 is 100 % by definition),
    from 0 unless every one of them is high, so they neither all look white nor all look dark."""
    if not np.isfinite(values).any():
        return 0.0, 1.0
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    low = float(np.floor(low * 10) / 10) if low >= 0.3 else 0.0
    return low, max(high, low + 0.05)


def retention_heatmap(cohort_retention: pl.DataFrame, basis: str, value: str = "retention_rate") -> str | None:
    """Cohorts by lifetime month as an SVG grid drawn directly (hundreds of cells, each a slow text
    artist in matplotlib): every cell's value as a percentage, with a hover title, each cohort's size
    on the right and a colour key spanning the values after month 0."""
    frame = cohort_retention.filter(pl.col("basis") == basis)
    if frame.is_empty():
        return None
    cohorts = sorted(frame["cohort_month"].unique())
    months = int(frame["months_since_signup"].max()) + 1
    grid = np.full((len(cohorts), months), np.nan)
    row = {c: i for i, c in enumerate(cohorts)}
    for cohort, k, v in frame.select("cohort_month", "months_since_signup", value).iter_rows():
        grid[row[cohort], k] = np.nan if v is None else v
    sizes = dict(frame.select("cohort_month", "cohort_size").unique().iter_rows())
    low, high = _colour_scale(grid[:, 1:])
    colour = matplotlib.colors.Normalize(low, high, clip=True)
    blues = matplotlib.colormaps["Blues"]
    dark = low + 0.55 * (high - low)
    fills = blues(colour(np.nan_to_num(grid)))  # one colour map call for the grid
    cell_w, cell_h, left, top, size_w, key_w = 34, 22, 72, 40, 64, 70
    width, height = left + cell_w * months + size_w + key_w, top + cell_h * len(cohorts) + 8
    what = "of the cohort" if value == "retention_rate" else "of month 0"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="12" '
        f'data-vmin="{low:g}" data-vmax="{high:g}">',
        f'<text x="4" y="14" font-weight="600">cohort</text>'
        f'<text x="{left + cell_w * months / 2}" y="14" text-anchor="middle" font-weight="600">months since signup</text>'
        f'<text x="{left + cell_w * months + 8}" y="14" font-weight="600">size</text>',
    ]
    parts += [f'<text class="k" x="{left + cell_w * (k + 0.5)}" y="32" text-anchor="middle">{k}</text>' for k in range(months)]
    for i, cohort in enumerate(cohorts):
        y = top + cell_h * i
        label = cohort.strftime("%Y-%m")
        parts.append(f'<text class="cohort" x="4" y="{y + 15}">{label}</text>')
        for k in range(months):
            v = grid[i, k]
            if not np.isfinite(v):
                continue
            x = left + cell_w * k
            fill = matplotlib.colors.to_hex(fills[i, k])
            ink = "#fff" if v > dark else "#000"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{fill}">'
                f"<title>{label}, month {k}: {v * 100:.1f} % {what}</title></rect>"
                f'<text class="v" x="{x + cell_w / 2}" y="{y + 15}" text-anchor="middle" font-size="11" fill="{ink}">'
                f"{v * 100:.0f}</text>"
            )
        parts.append(f'<text class="size" x="{left + cell_w * months + 8}" y="{y + 15}">{sizes[cohort]:,}</text>')
    key_x, steps = left + cell_w * months + size_w, 8
    key_h = min(cell_h * len(cohorts), 200)
    for j in range(steps):
        share = high - (high - low) * (j + 0.5) / steps
        fill = matplotlib.colors.to_hex(blues(colour(share)))
        parts.append(
            f'<rect x="{key_x}" y="{top + key_h * j / steps:.1f}" width="14" height="{key_h / steps + 0.5:.1f}" fill="{fill}"/>'
        )
    for share, y in ((high, top + 9), (low, top + key_h)):
        parts.append(f'<text class="key" x="{key_x + 18}" y="{y:.1f}">{share * 100:.0f} %</text>')
    parts.append("</svg>")
    return "".join(parts)


def _by_lifetime_month(
    table: pl.DataFrame, basis: str, height: float = 3.2, top: float = 0.45
) -> tuple[plt.Figure, plt.Axes, pl.DataFrame, np.ndarray] | None:
    """A figure for one basis's rows by lifetime month, with those rows and their months; None when it has none."""
    frame = table.filter(pl.col("basis") == basis).sort("months_since_signup")
    if frame.is_empty():
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, height))
    _margins(fig, left=0.8, bottom=0.5, top=top)
    return fig, ax, frame, frame["months_since_signup"].to_numpy()


def retention_curve_chart(curve: pl.DataFrame, basis: str) -> plt.Figure | None:
    if (drawn := _by_lifetime_month(curve, basis)) is None:
        return None
    fig, ax, frame, k = drawn
    ax.fill_between(
        k,
        frame["survival_ci_low"].to_numpy(),
        frame["survival_ci_high"].to_numpy(),
        step="post",
        alpha=0.25,
        color="tab:blue",
        label="95 % band",
    )
    ax.step(k, frame["survival"].to_numpy(), where="post", color="tab:blue", label="share not yet churned (Kaplan-Meier)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("months since signup")
    ax.set_ylabel("share not yet churned")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    _legend_above(ax, 2)
    return fig


def hazard_chart(high_risk: pl.DataFrame, basis: str) -> plt.Figure | None:
    """Hazard by lifetime month: tested months solid (red when flagged), untested ones hatched;
    the axis fits the tested months, and a bar that runs past it carries its value at the edge."""
    if (drawn := _by_lifetime_month(high_risk, basis, top=0.5)) is None:
        return None
    fig, ax, frame, k = drawn
    hazard = frame["hazard"].to_numpy()
    flagged = frame["is_high_risk"].fill_null(False).to_numpy()
    tested = frame["p_value"].is_not_null().to_numpy()
    baseline = _floats(frame["baseline_hazard"])
    for mask, style in [
        (tested & ~flagged, {"facecolors": COLOURS["tested"], "label": "tested"}),
        (flagged, {"facecolors": COLOURS["flagged"], "label": "high risk"}),
        (~tested, {"facecolors": "white", "edgecolors": "#999999", "hatch": "////", "label": "not tested"}),
    ]:
        if mask.any():
            _bars(ax, k[mask], hazard[mask], **style)
    ax.plot(k, baseline, color="black", lw=1, marker=".", label="baseline from neighbours")
    shown = np.concatenate([hazard[tested], baseline[np.isfinite(baseline)]])
    top = float(shown.max()) * 1.25 if shown.size and shown.max() > 0 else float(max(hazard.max(), 0.01)) * 1.1
    ax.set_ylim(0, top)
    for month, value, is_flagged in zip(k, hazard, flagged, strict=True):
        if value > top:
            ax.annotate(
                f"▲ {value * 100:.0f} %",
                (month, top),
                ha="center",
                va="top",
                fontsize=8,
                color="#555555",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
            )
        elif is_flagged:
            ax.annotate("high risk", (month, value), ha="center", va="bottom", color=COLOURS["flagged"], fontsize=8)
    ax.set_xlabel("months since signup")
    ax.set_ylabel("share churning in the month")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    _legend_above(ax)
    return fig


def rate_ratio_chart(frame: pl.DataFrame, label: str) -> plt.Figure | None:
    """Each group's churn rate against all other groups on a log axis; a ratio of 0 (no churn at
    all) sits at the axis's left edge with its value written beside it. None with fewer than two groups."""
    if frame.height < 2:
        return None
    frame = frame.sort("rate_ratio_vs_others", nulls_last=True)
    labels = [f"{name}, n={customers:,}" for name, customers in frame.select(label, "customers").iter_rows()]
    fig, ax = plt.subplots(figsize=(WIDTH, 0.9 + 0.32 * frame.height))
    _margins(fig, left=_label_inches(labels), bottom=0.55, top=0.1)
    y = np.arange(frame.height)
    ratio = _floats(frame["rate_ratio_vs_others"])
    low = _floats(frame["rate_ratio_ci_low"])
    high = _floats(frame["rate_ratio_ci_high"])
    positive = np.concatenate([low, high, ratio])
    positive = positive[np.isfinite(positive) & (positive > 0)]
    edge = float(positive.min()) / 1.6 if positive.size else 0.1
    right = float(positive.max()) * 1.6 if positive.size else 10.0
    ax.set_xscale("log")
    ax.set_xlim(edge, right)
    drawn, low_drawn = np.where(ratio > 0, ratio, edge), np.where(low > 0, low, edge)
    ax.errorbar(
        drawn,
        y,
        xerr=[np.nan_to_num(drawn - low_drawn), np.nan_to_num(np.maximum(high - drawn, 0))],
        fmt="none",
        ecolor="tab:blue",
        capsize=3,
    )
    positive_ratio = ratio > 0
    ax.plot(drawn[positive_ratio], y[positive_ratio], "o", color="tab:blue")
    for row in y[ratio == 0]:
        ax.plot(edge, row, "<", color="tab:blue", clip_on=False)
        ax.annotate("0: no churn", (edge, row), xytext=(8, 0), textcoords="offset points", va="center", fontsize=8)
    ax.axvline(1, color="black", lw=0.8)
    ax.set_yticks(y, labels)
    # plain tick labels: the log scale's default 10^k labels start matplotlib's slow mathtext parser
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xticks([t for t in (0.03125, 0.0625, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16) if edge <= t <= right])
    ax.set_xlabel("monthly churn rate / that of all other groups (rate ratio, 95 % interval, log scale)")
    return fig


def price_change_chart(changes: pl.DataFrame) -> plt.Figure | None:
    if changes.is_empty():
        return None
    labels = [
        f"{p} {m:%Y-%m}\n{kind.replace('_', ' ')}"
        for p, m, kind in changes.select("plan", "change_month", "change_kind").iter_rows()
    ]
    x = np.arange(changes.height)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    _margins(fig, left=0.8, bottom=0.65, top=0.45)
    for offset, column, color, name in [
        (-0.3, "churn_rate_before", "#f4a9a8", "affected, before"),
        (-0.1, "churn_rate_after", COLOURS["churned"], "affected, after"),
        (0.1, "unaffected_churn_rate_before", "lightsteelblue", "other plans, before"),
        (0.3, "unaffected_churn_rate_after", COLOURS["existing"], "other plans, after"),
    ]:
        _bars(ax, x + offset, _floats(changes[column]), width=0.2, facecolors=color, label=name)
    ax.set_xticks(x, labels)
    ax.set_xlim(-0.6, changes.height - 0.4)
    ax.set_ylabel("monthly churn rate")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    _legend_above(ax)
    return fig


def _churn_rate_panel(ax: plt.Axes, x: np.ndarray, rate: np.ndarray, bands: BenchmarkBands) -> None:
    limits = [
        0,
        bands.healthy,
        bands.acceptable_while_young,
        bands.typical,
        bands.high,
        max(0.2, float(np.nanmax(rate)) * 1.1 if np.isfinite(rate).any() else 0.2),
    ]
    names = ["healthy", "young", "typical", "high", "emergency"]
    for (low, high), color, name in zip(
        zip(limits, limits[1:], strict=False), ["#e3f3e3", "#f0f6dc", "#fbf3d9", "#fbe3d0", "#f8d0d0"], names, strict=True
    ):
        ax.axhspan(low, high, color=color, lw=0, label=f"{name} ≤ {high:.0%}" if high < limits[-1] else f"{name} > {low:.0%}")
    ax.plot(x, rate, color="black", marker=".", label="customer churn rate")
    ax.set_ylim(0, limits[-1])
    ax.set_ylabel("customer churn rate")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def monthly_chart(monthly: pl.DataFrame, basis: str, bands: BenchmarkBands, currency: str = "") -> plt.Figure | None:
    """Subscription: MRR at month end, the MRR bridge (with the net movement) and the churn rate on
    the benchmark bands. Orders: revenue from new vs existing customers and the churn rate."""
    frame = monthly.filter(pl.col("basis") == basis).sort("month")
    if frame.is_empty():
        return None
    months = frame["month"].to_list()
    x = np.arange(len(months))
    money = f" ({currency})" if currency else ""
    if basis == "subscription":
        fig, (level, movements, churn) = plt.subplots(
            3, 1, figsize=(WIDTH, 7.2), sharex=True, gridspec_kw={"height_ratios": [1, 1.4, 1]}
        )
        _margins(fig, left=1.05, bottom=0.75, right=2.0, top=0.15, hspace=0.12)
        mrr = _floats(frame["mrr_end"])
        level.fill_between(x, mrr, color="#dfe8f3", lw=0)
        level.plot(x, mrr, color="black", lw=1.2, label="MRR at month end")
        level.set_ylim(0, float(np.nanmax(mrr)) * 1.1 if np.isfinite(mrr).any() and np.nanmax(mrr) > 0 else 1)
        level.set_ylabel(f"MRR{money}")
        thousands(level.yaxis)
        _legend_right(level)
        up = np.zeros(len(x))
        for column, colour in [("new_mrr", "new"), ("expansion_mrr", "expansion"), ("reactivation_mrr", "reactivation")]:
            values = frame[column].fill_null(0).to_numpy()
            _bars(movements, x, values, up, facecolors=COLOURS[colour], label=column.removesuffix("_mrr"))
            up += values
        down = np.zeros(len(x))
        for column, colour in [("contraction_mrr", "contraction"), ("churned_mrr", "churned")]:
            values = -frame[column].fill_null(0).to_numpy()
            _bars(movements, x, values, down, facecolors=COLOURS[colour], label=column.removesuffix("_mrr"))
            down += values
        movements.plot(x, up + down, "D", color="black", markersize=3.5, label="net movement")
        movements.axhline(0, color="black", lw=0.6)
        movements.set_ylabel(f"MRR movement{money}")
        thousands(movements.yaxis)
        _legend_right(movements)
    else:
        fig, (movements, churn) = plt.subplots(2, 1, figsize=(WIDTH, 5.4), sharex=True)
        _margins(fig, left=1.05, bottom=0.75, right=2.0, top=0.15, hspace=0.1)
        new = frame["new_customer_revenue"].fill_null(0).to_numpy()
        _bars(movements, x, new, facecolors=COLOURS["new"], label="new customers")
        existing = frame["existing_customer_revenue"].fill_null(0).to_numpy()
        _bars(movements, x, existing, new, facecolors=COLOURS["existing"], label="existing customers")
        movements.axhline(0, color="black", lw=0.6)
        movements.set_ylabel(f"net revenue{money}")
        thousands(movements.yaxis)
        _legend_right(movements)
    _churn_rate_panel(churn, x, _floats(frame["customer_churn_rate"]), bands)
    step = _tick_step(len(x), 18)
    churn.set_xticks(x[::step], [m.strftime("%Y-%m") for m in months[::step]], rotation=45, ha="right")
    churn.set_xlim(-0.6, len(x) - 0.4)
    return fig


def reactivation_chart(reactivation: pl.DataFrame, basis: str) -> plt.Figure | None:
    """Shares of churned customers back within 30/60/90 days; None when nobody came back."""
    frame = reactivation.filter((pl.col("basis") == basis) & pl.col("dimension").is_in(["all", "channel"]))
    if frame.filter(pl.col("dimension") == "channel").height < 2:  # one channel repeats "all customers"
        frame = frame.filter(pl.col("dimension") == "all")
    shares = [f"returned_within_{window}d_share" for window in (30, 60, 90)]
    if frame.is_empty() or not (frame.select(pl.max_horizontal(shares).max()).item() or 0) > 0:
        return None
    frame = frame.sort(pl.col("dimension") != "all", "value")
    labels = [("all customers" if d == "all" else v) for d, v in frame.select("dimension", "value").iter_rows()]
    y = np.arange(frame.height)
    fig, ax = plt.subplots(figsize=(WIDTH, 1.1 + 0.38 * frame.height))
    _margins(fig, left=_label_inches(labels), bottom=0.55, top=0.4)
    for offset, column, color in zip((-0.25, 0, 0.25), shares, ("#c6dbef", "#6baed6", "#2171b5"), strict=True):
        window = column.split("_")[2].removesuffix("d")
        _bars(
            ax,
            y + offset,
            _floats(frame[column]),
            width=0.25,
            horizontal=True,
            facecolors=color,
            label=f"back within {window} days",
        )
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, max(0.05, float(frame.select(pl.max_horizontal(shares).max()).item()) * 1.15))
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("share of churned customers who came back")
    _legend_above(ax, 3)
    return fig


def sparkline(values: list[float | None], width: int = 120, height: int = 28) -> str:
    """A tiny inline SVG line of the values (nulls skipped), for the summary's 12-month trend."""
    points = [(i, v) for i, v in enumerate(values) if v is not None and np.isfinite(v)]
    if len(points) < 2:
        return ""
    low, high = min(v for _, v in points), max(v for _, v in points)
    span = (high - low) or 1.0
    step = (width - 4) / max(len(values) - 1, 1)
    path = " ".join(f"{2 + i * step:.1f},{height - 3 - (v - low) / span * (height - 6):.1f}" for i, v in points)
    last_x, last_y = path.split(" ")[-1].split(",")
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-hidden="true">'
        f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2.2" fill="#1f77b4"/></svg>'
    )
