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
        "font.size": 9,
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


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value * 100:.{digits}f} %"


def num(value: float | None, digits: int = 2) -> str:
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


def _by_lifetime_month(table: pl.DataFrame, basis: str) -> tuple[plt.Figure, plt.Axes, pl.DataFrame, np.ndarray] | None:
    """A figure for one basis's rows by lifetime month, with those rows and their months; None when it has none."""
    frame = table.filter(pl.col("basis") == basis).sort("months_since_signup")
    if frame.is_empty():
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    _margins(fig, left=0.75, bottom=0.5)
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
    ax.step(k, frame["survival"].to_numpy(), where="post", color="tab:blue", label="survival (Kaplan-Meier)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("months since signup")
    ax.set_ylabel("share not yet churned")
    ax.legend(frameon=False)
    return fig


def hazard_chart(high_risk: pl.DataFrame, basis: str) -> plt.Figure | None:
    if (drawn := _by_lifetime_month(high_risk, basis)) is None:
        return None
    fig, ax, frame, k = drawn
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
