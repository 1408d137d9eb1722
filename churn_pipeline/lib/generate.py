"""Realistic raw data in the contract's format, with planted and documented patterns.

Everything is vectorised over customers with numpy (loops run over lifetime months or
order numbers, never over rows). Patterns (see docs/generator.md):
- channels with different churn: subscription hazard x1.0 organic, x1.8 ads, x0.6 referral,
  x1.2 partner; orders: ads buyers buy less often and more often only once;
- segments smb x1.2, mid_market x0.8, enterprise x0.5;
- a smoothly falling base hazard 0.02 + 0.06 * exp(-0.08 k) per lifetime month k, times
  `spike_factor` in `spike_month` (the planted "month five" spike);
- a price increase for existing customers of plan `basic` (20 -> 25) in calendar month
  `months * 2 // 3`, with hazard x1.8 for the affected customers over the next 3 months;
- a signup price change of plan `pro` (50 -> 60) for signups from month `months // 2`,
  with hazard x1.3 over their first 6 lifetime months;
- trials (40 % of subscribers, plus non-converting trialists), voluntary (75 %) and
  involuntary (25 %, after a failed payment) churn, recovered failed payments,
  reactivations (20 % of churned customers, 15-120 days later), upgrades and downgrades,
  annual plans, refunds, EUR orders with an fx rate, and timestamps written with `Z`,
  `-05:00`, `+09:00` offsets or naive (UTC);
- with `messy_share` > 0, deliberately bad rows of every quarantine reason, counted in
  `_generated_manifest.json` (which the pipeline does not read).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

DAY = 86_400
CHANNELS = np.array(["organic", "ads", "referral", "partner", ""])
CHANNEL_P = np.array([0.38, 0.30, 0.14, 0.13, 0.05])
CHANNEL_HAZARD = np.array([1.0, 1.8, 0.6, 1.2, 1.0])
SEGMENTS = np.array(["smb", "mid_market", "enterprise"])
SEGMENT_P = np.array([0.6, 0.3, 0.1])
SEGMENT_HAZARD = np.array([1.2, 0.8, 0.5])
PLANS = np.array(["basic", "pro", "pro_annual"])
PLAN_P = np.array([0.55, 0.35, 0.10])
PLAN_PRICE = np.array([20.0, 50.0, 480.0])
PLAN_PERIOD = np.array(["month", "month", "year"])


@dataclass(frozen=True)
class GeneratorConfig:
    customers: int = 2000
    months: int = 24
    seed: int = 7
    spike_month: int | None = 5
    spike_factor: float = 2.5
    messy_share: float = 0.0
    file_format: str = "csv"
    start: str = "2023-01-01"
    order_customers: int | None = None
    id_prefix: str = ""
    """Prepended to every customer, event and order id: chunks generated apart never collide."""
    layout: str = "flat"
    """`flat`: two files per source in `out`; `monthly`: one file per source in each `out/YYYY-MM/` (UTC month)."""

    def __post_init__(self) -> None:
        if self.customers < 1 or self.months < 2:
            raise ValueError("generate: --customers must be >= 1 and --months >= 2")
        if not 0 <= self.messy_share <= 0.5:
            raise ValueError("generate: --messy-share must be between 0 and 0.5")
        if self.file_format not in ("csv", "parquet", "mixed"):
            raise ValueError("generate: --format must be csv, parquet or mixed")
        if self.layout not in ("flat", "monthly"):
            raise ValueError("generate: --layout must be flat or monthly")

    @property
    def price_increase_month(self) -> int:
        return self.months * 2 // 3

    @property
    def signup_price_change_month(self) -> int:
        return self.months // 2


def base_hazard(k: np.ndarray) -> np.ndarray:
    return 0.02 + 0.06 * np.exp(-0.08 * k)


class _Months:
    """Epoch seconds of calendar month starts, counted from the configured start month."""

    def __init__(self, start: str, count: int):
        first = np.datetime64(start[:7], "M")
        self.starts = (first + np.arange(count + 2)).astype("datetime64[s]").astype(np.int64)
        self.count = count

    def start(self, index: np.ndarray) -> np.ndarray:
        return self.starts[index]

    @property
    def end(self) -> int:
        return int(self.starts[self.count])


def _uniform_between(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return low + np.floor(rng.random(len(low)) * np.maximum(high - low, 1)).astype(np.int64)


def _subscriptions(config: GeneratorConfig, rng: np.random.Generator, months: _Months) -> dict[str, np.ndarray]:
    n = config.customers
    m0 = rng.integers(0, config.months, n)
    signup = _uniform_between(rng, months.start(m0), months.start(m0 + 1))
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_P)
    segment = rng.choice(len(SEGMENTS), n, p=SEGMENT_P)
    plan = rng.choice(len(PLANS), n, p=PLAN_P)
    price = PLAN_PRICE[plan].copy()
    new_pro_price = (plan == 1) & (m0 >= config.signup_price_change_month)
    price[new_pro_price] = 60.0

    # one plan change for 15 % of customers, 30-300 days after signup
    changes = rng.random(n) < 0.15
    change_at = signup + rng.integers(30, 300, n) * DAY
    plan_after = np.where(plan == 0, 1, 0)
    p_month = config.price_increase_month
    p_time = int(months.start(np.array([p_month]))[0]) + 3600
    plan_at_p = np.where(changes & (change_at < p_time), plan_after, plan)
    basic_at_p = (plan_at_p == 0) & (signup < p_time)

    churn_at = np.full(n, -1, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    multiplier = CHANNEL_HAZARD[channel] * SEGMENT_HAZARD[segment]
    for k in range(config.months):
        calendar = m0 + k
        at_risk = alive & (calendar < config.months)
        if not at_risk.any():
            break
        hazard = base_hazard(np.full(n, k)) * multiplier
        if config.spike_month is not None and k == config.spike_month:
            hazard = hazard * config.spike_factor
        hazard = np.where(basic_at_p & (calendar >= p_month) & (calendar < p_month + 3), hazard * 1.8, hazard)
        hazard = np.where(new_pro_price & (k < 6), hazard * 1.3, hazard)
        churns = at_risk & (rng.random(n) < np.minimum(hazard, 0.95))
        low = np.maximum(signup, months.start(np.minimum(calendar, config.months)) + 1)
        high = months.start(np.minimum(calendar + 1, config.months + 1))
        churn_at = np.where(churns, _uniform_between(rng, low, high), churn_at)
        alive &= ~churns
    churned = churn_at >= 0
    involuntary = churned & (rng.random(n) < 0.25)
    react_at = churn_at + rng.integers(15, 121, n) * DAY
    reactivates = churned & (rng.random(n) < 0.20) & (react_at < months.end)
    return {
        "m0": m0,
        "signup": signup,
        "channel": channel,
        "segment": segment,
        "plan": plan,
        "price": price,
        "changes": changes & (change_at < np.where(churned, churn_at, months.end)),
        "change_at": change_at,
        "plan_after": plan_after,
        "p_time": np.int64(p_time),
        "basic_at_p": basic_at_p,
        "churn_at": churn_at,
        "churned": churned,
        "involuntary": involuntary,
        "react_at": react_at,
        "reactivates": reactivates,
    }


def _event_frame(customer: np.ndarray, at: np.ndarray, kind: str, **columns: object) -> pl.DataFrame:
    frame = pl.DataFrame({"customer": customer.astype(np.int64), "at": at.astype(np.int64)})
    frame = frame.with_columns(pl.lit(kind).alias("event_type"))
    for name in ("plan", "price", "billing_period", "channel", "segment"):
        value = columns.get(name)
        frame = frame.with_columns(
            (
                pl.Series(name, value)
                if isinstance(value, np.ndarray)
                else pl.lit(value, dtype=pl.String if name != "price" else pl.Float64)
            ).alias(name)
        )
    return frame


def _subscription_events(config: GeneratorConfig, rng: np.random.Generator, months: _Months) -> pl.DataFrame:
    s = _subscriptions(config, rng, months)
    n = config.customers
    ids = np.arange(n)
    plan_name, period = PLANS[s["plan"]], PLAN_PERIOD[s["plan"]]
    end_first = np.where(s["churned"], s["churn_at"], months.end)
    frames = [
        _event_frame(
            ids,
            s["signup"],
            "subscribed",
            plan=plan_name,
            price=s["price"],
            billing_period=period,
            channel=CHANNELS[s["channel"]],
            segment=SEGMENTS[s["segment"]],
        ),
    ]
    trial = rng.random(n) < 0.40
    frames.append(
        _event_frame(
            ids[trial],
            s["signup"][trial] - rng.integers(3, 15, trial.sum()) * DAY,
            "trial_started",
            channel=CHANNELS[s["channel"][trial]],
        )
    )
    # renewals on each billing anniversary while the first spell lasts
    step = np.where(s["plan"] == 2, 12, 1)
    counts = np.maximum(((end_first - s["signup"]) // (DAY * 30.44 * step)).astype(np.int64), 0)
    who = np.repeat(ids, counts)
    nth = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    renew_at = s["signup"][who] + (nth * step[who] * 30.44 * DAY).astype(np.int64)
    keep = renew_at < end_first[who]
    who, renew_at = who[keep], renew_at[keep]
    frames.append(_event_frame(who, renew_at, "renewed"))
    recovered = rng.random(len(who)) < 0.04
    frames.append(_event_frame(who[recovered], renew_at[recovered] - 2 * DAY, "payment_failed"))
    # plan changes: upgrades basic -> pro, downgrades to basic
    c = s["changes"]
    frames.append(
        _event_frame(
            ids[c],
            s["change_at"][c],
            "plan_changed",
            plan=PLANS[s["plan_after"][c]],
            price=PLAN_PRICE[s["plan_after"][c]],
            billing_period="month",
        )
    )
    # the business raises basic from 20 to 25 for everyone on it at the price-change time
    alive_at_p = s["basic_at_p"] & (end_first > s["p_time"])
    frames.append(
        _event_frame(
            ids[alive_at_p],
            np.full(alive_at_p.sum(), s["p_time"]),
            "price_changed",
            plan="basic",
            price=25.0,
            billing_period="month",
        )
    )
    vol = s["churned"] & ~s["involuntary"]
    inv = s["involuntary"]
    frames.append(_event_frame(ids[vol], s["churn_at"][vol], "cancelled"))
    failed_at = np.maximum(s["churn_at"][inv] - 5 * DAY, s["signup"][inv] + 1)
    frames.append(_event_frame(ids[inv], failed_at, "payment_failed"))
    frames.append(_event_frame(ids[inv], s["churn_at"][inv], "expired"))
    r = s["reactivates"]
    final_plan = np.where(c & (s["change_at"] < s["churn_at"]), s["plan_after"], s["plan"])[r]
    frames.append(
        _event_frame(
            ids[r],
            s["react_at"][r],
            "reactivated",
            plan=PLANS[final_plan],
            price=PLAN_PRICE[final_plan],
            billing_period=PLAN_PERIOD[final_plan],
        )
    )
    events = pl.concat(frames, how="vertical_relaxed").with_columns(
        pl.format(config.id_prefix + "s{}", "customer").alias("customer_id")
    )
    # trialists who never subscribe; half cancel during the trial
    trialists = int(n * 0.25)
    t_start = _uniform_between(rng, np.full(trialists, months.start(np.array([0]))[0]), np.full(trialists, months.end - 15 * DAY))
    t_ids = np.arange(trialists)
    cancels = rng.random(trialists) < 0.5
    trials = pl.concat(
        [
            _event_frame(t_ids, t_start, "trial_started", channel=CHANNELS[rng.choice(len(CHANNELS), trialists, p=CHANNEL_P)]),
            _event_frame(t_ids[cancels], t_start[cancels] + rng.integers(1, 8, cancels.sum()) * DAY, "cancelled"),
        ],
        how="vertical_relaxed",
    ).with_columns(pl.format(config.id_prefix + "t{}", "customer").alias("customer_id"))
    events = pl.concat([events, trials], how="vertical_relaxed").filter(pl.col("at") < months.end)
    return (
        events.sort("at", "customer_id")
        .with_row_index("n")
        .with_columns(pl.format(config.id_prefix + "e{}", pl.col("n") + 1).alias("event_id"))
    )


def _orders(config: GeneratorConfig, rng: np.random.Generator, months: _Months) -> pl.DataFrame:
    n = config.order_customers if config.order_customers is not None else config.customers
    m0 = rng.integers(0, config.months, n)
    first = _uniform_between(rng, months.start(m0), months.start(m0 + 1))
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_P)
    one_time = rng.random(n) < np.array([0.30, 0.50, 0.20, 0.35, 0.30])[channel]
    mean_gap = np.array([45.0, 80.0, 35.0, 50.0, 50.0])[channel] * DAY
    eur = rng.random(n) < 0.10
    customers, times = [np.arange(n)], [first]
    current, buying = first.copy(), ~one_time
    for _ in range(40):
        current = current + rng.exponential(mean_gap).astype(np.int64) + DAY
        buying &= (current < months.end) & (rng.random(n) > 0.06)
        if not buying.any():
            break
        customers.append(np.flatnonzero(buying))
        times.append(current[buying])
    who = np.concatenate(customers)
    at = np.concatenate(times)
    amount = np.round(rng.lognormal(3.5, 0.6, len(who)), 2)
    amount = np.where(eur[who], np.round(amount / 1.1, 2), amount)
    orders = pl.DataFrame({"customer": who, "at": at, "amount": amount, "eur": eur[who], "first_channel": CHANNELS[channel][who]})
    refunded = orders.filter(pl.Series(rng.random(orders.height) < 0.03))
    refunds = refunded.with_columns(
        (pl.col("at") + pl.Series(rng.integers(1, 21, refunded.height) * DAY)).alias("at"),
        (-(pl.col("amount") * 0.5).round(2)).alias("amount"),
    )
    orders = pl.concat([orders, refunds]).filter(pl.col("at") < months.end)
    return (
        orders.with_columns(
            pl.format(config.id_prefix + "b{}", "customer").alias("customer_id"),
            pl.when(pl.col("eur")).then(pl.lit("EUR")).otherwise(pl.lit("")).alias("currency"),
            pl.when(pl.col("at") == pl.col("at").min().over("customer"))
            .then(pl.col("first_channel"))
            .otherwise(pl.lit(""))
            .alias("channel"),
        )
        .sort("at", "customer_id")
        .with_row_index("n")
        .with_columns(pl.format(config.id_prefix + "o{}", pl.col("n") + 1).alias("order_id"))
    )


def _timestamps(frame: pl.DataFrame, rng: np.random.Generator) -> pl.Expr:
    """The same instant written with Z (55 %), -05:00 (20 %), +09:00 (15 %) or naive UTC (10 %)."""
    style = pl.Series(rng.choice(4, frame.height, p=[0.55, 0.20, 0.15, 0.10]))
    instant = pl.from_epoch(pl.col("at"), time_unit="s")
    fmt = "%Y-%m-%dT%H:%M:%S"
    return (
        pl.when(style == 0)
        .then(instant.dt.strftime(fmt) + "Z")
        .when(style == 1)
        .then((instant - pl.duration(hours=5)).dt.strftime(fmt) + "-05:00")
        .when(style == 2)
        .then((instant + pl.duration(hours=9)).dt.strftime(fmt) + "+09:00")
        .otherwise(instant.dt.strftime("%Y-%m-%d %H:%M:%S"))
    )


def _messy_events(events: pl.DataFrame, count: int, rng: np.random.Generator) -> tuple[pl.DataFrame, dict[str, int]]:
    """Bad subscription rows, one kind per reason; returns them with their expected reasons."""
    per = max(count // 8, 1)
    sample = events.filter(pl.col("event_type") == "renewed").sample(min(per, events.height), seed=int(rng.integers(1 << 30)))
    base = events.head(0)
    bad = [
        ("duplicate event_id", sample),
        (
            "unparseable occurred_at",
            sample.with_columns(pl.lit("not a time").alias("occurred_at"), pl.format("{}-badtime", "event_id").alias("event_id")),
        ),
        (
            "unknown event_type",
            sample.with_columns(pl.lit("upgraded").alias("event_type"), pl.format("{}-badtype", "event_id").alias("event_id")),
        ),
        (
            "missing customer_id",
            sample.with_columns(
                pl.lit(None, pl.String).alias("customer_id"), pl.format("{}-nocust", "event_id").alias("event_id")
            ),
        ),
        (
            "negative price",
            sample.with_columns(
                pl.lit("plan_changed").alias("event_type"),
                pl.lit("basic").alias("plan"),
                pl.lit(-5.0).alias("price"),
                pl.format("{}-negprice", "event_id").alias("event_id"),
            ),
        ),
        (
            "no fx rate for currency XYZ",
            sample.with_columns(
                pl.lit("plan_changed").alias("event_type"),
                pl.lit("basic").alias("plan"),
                pl.lit(20.0).alias("price"),
                pl.lit("XYZ").alias("currency"),
                pl.format("{}-xyz", "event_id").alias("event_id"),
            ),
        ),
        (
            "renewed before the customer's first subscribed",
            sample.with_columns(
                pl.format("{}-ghost", "customer_id").alias("customer_id"), pl.format("{}-ghost", "event_id").alias("event_id")
            ),
        ),
    ]
    frames = [frame.select(base.columns) if frame.height else base for _, frame in bad]
    return pl.concat(frames, how="vertical_relaxed"), {reason: frame.height for reason, frame in bad}


def _messy_orders(orders: pl.DataFrame, count: int, rng: np.random.Generator) -> tuple[pl.DataFrame, dict[str, int]]:
    per = max(count // 5, 1)
    sample = orders.sample(min(per, orders.height), seed=int(rng.integers(1 << 30)))
    bad = [
        ("duplicate order_id", sample),
        (
            "unparseable amount",
            sample.with_columns(pl.lit("twelve").alias("amount"), pl.format("{}-badamt", "order_id").alias("order_id")),
        ),
        (
            "unparseable ordered_at",
            sample.with_columns(
                pl.lit("2024-13-45T99:00:00Z").alias("ordered_at"), pl.format("{}-badtime", "order_id").alias("order_id")
            ),
        ),
        (
            "missing customer_id",
            sample.with_columns(
                pl.lit(None, pl.String).alias("customer_id"), pl.format("{}-nocust", "order_id").alias("order_id")
            ),
        ),
        (
            "no fx rate for currency XYZ",
            sample.with_columns(pl.lit("XYZ").alias("currency"), pl.format("{}-xyz", "order_id").alias("order_id")),
        ),
    ]
    return pl.concat([frame for _, frame in bad], how="vertical_relaxed"), {reason: frame.height for reason, frame in bad}


def _write(frame: pl.DataFrame, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        frame.write_parquet(temporary)
    else:
        frame.write_csv(temporary)
    temporary.replace(path)


def generate(out: Path, config: GeneratorConfig) -> dict[str, int]:
    """Write subscription_events*, orders* and fx_rates.csv into `out`; returns rows per file."""
    rng = np.random.default_rng(config.seed)
    months = _Months(config.start, config.months)
    out.mkdir(parents=True, exist_ok=True)
    for old in [
        *out.glob("subscription_events*"),
        *out.glob("orders*"),
        *out.glob("fx_rates*"),
        *out.glob("*/subscription_events*"),
        *out.glob("*/orders*"),
    ]:
        old.unlink()

    events = _subscription_events(config, rng, months)
    events = events.with_columns(
        _timestamps(events, rng).alias("occurred_at"),
        pl.col("price").cast(pl.String),
        pl.lit("").alias("currency"),
        _utc_month(),
    ).select(
        "event_id",
        "customer_id",
        "occurred_at",
        "event_type",
        "plan",
        "price",
        "billing_period",
        "currency",
        "channel",
        "segment",
        "_month",
    )
    orders = _orders(config, rng, months)
    orders = orders.with_columns(
        _timestamps(orders, rng).alias("ordered_at"), pl.col("amount").cast(pl.String), _utc_month()
    ).select("order_id", "customer_id", "ordered_at", "amount", "currency", "channel", "_month")
    manifest: dict[str, dict[str, int]] = {"subscription_events": {}, "orders": {}}
    if config.messy_share > 0:
        bad_events, manifest["subscription_events"] = _messy_events(events, int(events.height * config.messy_share), rng)
        bad_orders, manifest["orders"] = _messy_orders(orders, int(orders.height * config.messy_share), rng)
        events = pl.concat([events, bad_events.with_columns(pl.col("price").cast(pl.String))], how="vertical_relaxed")
        orders = pl.concat([orders, bad_orders], how="vertical_relaxed")
        # shuffle so bad rows are spread through the files
        events = events.sample(fraction=1.0, shuffle=True, seed=config.seed)
        orders = orders.sample(fraction=1.0, shuffle=True, seed=config.seed)

    parts = _monthly_parts(events, orders, config) if config.layout == "monthly" else _flat_parts(events, orders, config)
    parts["fx_rates.csv"] = pl.DataFrame({"currency": ["EUR", "GBP"], "rate_to_reporting": ["1.1", "1.27"]})
    written: dict[str, int] = {}
    for name, frame in parts.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        _write(frame.drop("_month", strict=False), out / name)
        written[str(out / name)] = frame.height
    (out / "_generated_manifest.json").write_text(
        json.dumps({"config": asdict(config), "quarantine_expected": manifest}, indent=2) + "\n", encoding="utf-8"
    )
    return written


def _utc_month() -> pl.Expr:
    return pl.from_epoch(pl.col("at"), time_unit="s").dt.strftime("%Y-%m").alias("_month")


def _monthly_parts(events: pl.DataFrame, orders: pl.DataFrame, config: GeneratorConfig) -> dict[str, pl.DataFrame]:
    """Each month's rows in `YYYY-MM/<source>.<ext>`, as a monthly delivery would arrive;
    rows before the first month (trials started earlier) in a top-level `<source>_history` file."""
    ext = ".parquet" if config.file_format == "parquet" else ".csv"
    first = config.start[:7]
    parts = {}
    for name, frame in (("subscription_events", events), ("orders", orders)):
        for (month,), rows in frame.partition_by("_month", as_dict=True, maintain_order=True).items():
            parts[f"{name}_history{ext}" if month < first else f"{month}/{name}{ext}"] = rows
    return dict(sorted(parts.items()))


def _flat_parts(events: pl.DataFrame, orders: pl.DataFrame, config: GeneratorConfig) -> dict[str, pl.DataFrame]:
    half_e, half_o = events.height // 2, orders.height // 2
    second = ".parquet" if config.file_format in ("parquet", "mixed") else ".csv"
    first = ".parquet" if config.file_format == "parquet" else ".csv"
    parts = {
        f"subscription_events_part1{first}": events.head(half_e),
        f"subscription_events_part2{second}": events.tail(events.height - half_e),
        f"orders_part1{first}": orders.head(half_o),
        f"orders_part2{second}": orders.tail(orders.height - half_o),
    }
    return parts
