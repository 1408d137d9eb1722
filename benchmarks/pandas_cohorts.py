"""The peer "what users do today": cohort retention counts the way cohort-analysis tutorials
compute them with pandas (read the CSVs, first month per customer, period index, nunique pivot).

It computes only the orders-basis and subscription-basis retention counts, with none of the
pipeline's validation, censoring, churn tables or checks. Usage: python pandas_cohorts.py RAW_DIR OUT_DIR
"""

import sys
from operator import attrgetter
from pathlib import Path

import pandas as pd


def cohort_counts(frame: pd.DataFrame, customer: str, timestamp: str) -> pd.DataFrame:
    frame = frame.dropna(subset=[customer, timestamp]).copy()
    frame["month"] = frame[timestamp].dt.tz_convert(None).dt.to_period("M")
    frame["cohort"] = frame.groupby(customer)["month"].transform("min")
    frame["period"] = (frame["month"] - frame["cohort"]).apply(attrgetter("n"))
    counts = frame.groupby(["cohort", "period"])[customer].nunique().reset_index()
    return counts.pivot_table(index="cohort", columns="period", values=customer)


def main() -> None:
    raw, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    orders = pd.concat([pd.read_csv(path) for path in sorted(raw.glob("orders*.csv"))])
    orders["ordered_at"] = pd.to_datetime(orders["ordered_at"], utc=True, errors="coerce", format="ISO8601")
    orders = orders[pd.to_numeric(orders["amount"], errors="coerce") > 0]
    cohort_counts(orders, "customer_id", "ordered_at").to_csv(out / "orders_cohorts.csv")

    events = pd.concat([pd.read_csv(path) for path in sorted(raw.glob("subscription_events*.csv"))])
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True, errors="coerce", format="ISO8601")
    active = events[events["event_type"].isin(["subscribed", "renewed", "reactivated", "plan_changed", "price_changed"])]
    cohort_counts(active, "customer_id", "occurred_at").to_csv(out / "subscription_cohorts.csv")


if __name__ == "__main__":
    main()
