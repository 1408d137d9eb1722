-- Subscription MRR as intervals: from each loaded event to the customer's next one, the MRR
-- held in between. Observed up to as_of (an interval whose next event comes later is open);
-- zero-MRR intervals are left out. The start month is the event's own `event_month` (already
-- in the reporting time zone), not converted again.
with observation as (
    select * from staging.int_observation_window
),

events as (
    select * from staging.int_observed_subscription_events
),

segments as (
    select
        events.customer_id,
        events.occurred_at as segment_start_at,
        case when events.next_event_at <= observation.as_of then events.next_event_at end as segment_end_at,
        events.mrr_after as mrr,
        events.event_month as segment_start_month
    from events, observation
    where events.mrr_after > 0
),

final as (
    select
        customer_id,
        segment_start_at,
        segment_end_at,
        mrr,
        segment_start_month,
        month_of(segment_end_at, $timezone) as segment_end_month
    from segments
)

select * from final
