-- Subscription MRR as intervals: from each loaded event to the customer's next one, the MRR
-- held in between. Observed up to as_of (an interval whose next event comes later is open);
-- zero-MRR intervals are left out. The months are the events' own `event_month` and
-- `next_event_month` (already in the reporting time zone), not converted again.
-- materialized: view
with observation as (
    select * from staging.int_observation_window
),

events as (
    select * from staging.int_observed_subscription_events
),

final as (
    select
        events.customer_id,
        events.occurred_at as segment_start_at,
        case when events.next_event_at <= observation.as_of then events.next_event_at end as segment_end_at,
        events.mrr_after as mrr,
        events.event_month as segment_start_month,
        case when events.next_event_at <= observation.as_of then events.next_event_month end as segment_end_month
    from events, observation
    where events.mrr_after > 0
)

select * from final
