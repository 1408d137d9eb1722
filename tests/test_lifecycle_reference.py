"""The subscription lifecycle against a plain reference: random customer histories (ties at the
same instant, events before and after 1970, every kind of contradiction) go through the SQL
models, and a per-customer state machine written from docs/ingestion.md ("Lifecycle order")
says what each event must get: its quarantine reason, and for loaded events the spell, plan and
MRR carried through the earlier loaded events, the movement and the next loaded event's time."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import LIFECYCLE_EVENT_TYPES, Built

TYPES = list(LIFECYCLE_EVENT_TYPES)
SETS_PLAN = {"subscribed", "reactivated", "plan_changed", "price_changed"}
CHURNS = {"cancelled", "expired"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# few distinct instants, so that ties in time (and in time and type) are common
event = st.tuples(
    st.sampled_from(TYPES),
    st.integers(-2, 3),  # days from 1970-01-01: some events have negative epoch times
    st.sampled_from([0, 12]),
    st.sampled_from(["basic", "pro"]),
    st.sampled_from([10, 20, 50]),
)
histories = st.lists(st.lists(event, min_size=1, max_size=7), min_size=1, max_size=25)


def _events(customers: list[list[tuple]]) -> list[dict]:
    rows = []
    for c, history in enumerate(customers):
        for i, (kind, day, hour, plan, price) in enumerate(history):
            rows.append(
                {
                    "event_id": f"e{c:02d}_{i}",
                    "customer_id": f"c{c:02d}",
                    "type": kind,
                    "at": EPOCH + timedelta(days=day, hours=hour),
                    "plan": plan if kind in SETS_PLAN else None,
                    "mrr": float(price) if kind in SETS_PLAN else None,
                }
            )
    return rows


def _reference(rows: list[dict]) -> tuple[dict, dict]:
    """(quarantine reason per event, carried values per loaded event), by the documented rules."""
    reasons, carried = {}, {}
    by_customer: dict[str, list[dict]] = {}
    for row in rows:
        by_customer.setdefault(row["customer_id"], []).append(row)
    for events in by_customer.values():
        events.sort(key=lambda e: (e["at"], TYPES.index(e["type"]), e["event_id"]))
        trial, state, subscribed = None, None, False
        loaded = []
        for e in events:
            subscribed = subscribed or e["type"] == "subscribed"
            before = not subscribed
            kind = e["type"]
            if before:
                if kind == "trial_started":
                    reason = "trial_started while a trial is open" if trial == "trialing" else None
                elif kind == "cancelled" and trial == "trialing":
                    reason = None
                else:
                    reason = f"{kind} before the customer's first subscribed"
            elif kind == "trial_started":
                reason = "trial_started after the customer's first subscribed"
            elif kind in ("subscribed", "reactivated"):
                reason = f"{kind} while already subscribed" if state == "active" else None
            else:
                reason = None if state == "active" else f"{kind} with no active subscription"
            reasons[e["event_id"]] = reason
            if reason is not None:
                continue  # a quarantined event changes nothing
            if before:
                trial = "trialing" if kind == "trial_started" else "not_trialing"
            elif kind in ("subscribed", "reactivated"):
                state = "active"
            elif kind in CHURNS:
                state = "churned"
            loaded.append((e, before))
        spells, plan, mrr, previous = 0, None, None, None
        for index, (e, before) in enumerate(loaded):
            kind = e["type"]
            spells += kind in ("subscribed", "reactivated")
            if previous is None or previous[1] or previous[0]["type"] in CHURNS:
                mrr_before = 0.0
            else:
                mrr_before = mrr if mrr is not None else 0.0
            plan = e["plan"] or plan
            mrr = e["mrr"] if e["mrr"] is not None else mrr
            mrr_after = None if before else 0.0 if kind in CHURNS else mrr
            if before:
                movement = None
            elif kind == "subscribed" and spells == 1:
                movement = "new"
            elif kind in ("subscribed", "reactivated"):
                movement = "reactivation"
            elif kind in CHURNS:
                movement = "voluntary_churn" if kind == "cancelled" else "involuntary_churn"
            elif kind in ("plan_changed", "price_changed") and mrr_after != mrr_before:
                movement = "expansion" if mrr_after > mrr_before else "contraction"
            else:
                movement = None
            following = loaded[index + 1][0]["at"] if index + 1 < len(loaded) else None
            carried[e["event_id"]] = (
                before,
                spells,
                None if before or kind in CHURNS else plan,
                mrr_before,
                mrr_after,
                movement,
                following,
            )
            previous = (e, before)
    return reasons, carried


def _csv(rows: list[dict]) -> str:
    lines = ["event_id,customer_id,occurred_at,event_type,plan,price,billing_period"]
    for r in rows:
        price = "" if r["mrr"] is None else f"{r['mrr']:g}"
        lines.append(f"{r['event_id']},{r['customer_id']},{r['at'].isoformat()},{r['type']},{r['plan'] or ''},{price},month")
    return "\n".join(lines) + "\n"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(customers=histories)
def test_lifecycle_matches_the_reference_state_machine(customers: list[list[tuple]]) -> None:
    rows = _events(customers)
    reasons, carried = _reference(rows)
    with tempfile.TemporaryDirectory() as name:
        raw = Path(name)
        (raw / "subscription_events.csv").write_text(_csv(rows), encoding="utf-8")
        built = Built(raw, as_of="2000-01-01T00:00:00Z")
        got_reasons = dict(
            built.sql("select event_id, lifecycle_error from staging.int_subscription_events_lifecycle").iter_rows()
        )
        got_carried = {
            row[0]: row[1:]
            for row in built.sql("""
                select event_id, is_before_first_subscribed, spell_number, plan_after, mrr_before, mrr_after,
                    movement, next_event_at
                from staging.int_subscription_event_states
            """).iter_rows()
        }
    assert got_reasons == reasons
    assert got_carried == carried
