-- Subscription MRR as intervals: from each loaded event to the customer's next one, the MRR
-- held in between. Observed up to as_of; zero-MRR intervals are left out. The months are the
-- events' own `event_month` (already in the reporting time zone), not converted again.
with events as (
    select * from staging.int_observed_subscription_events
),

segments as (
    select
        customer_id,
        occurred_at as segment_start_at,
        lead(occurred_at) over next_event as segment_end_at,
        mrr_after as mrr,
        event_month as segment_start_month,
        lead(event_month) over next_event as segment_end_month
    from events
    window next_event as (partition by customer_id order by event_seq)
),

final as (
    select
        customer_id,
        segment_start_at,
        segment_end_at,
        mrr,
        segment_start_month,
        segment_end_month
    from segments
    where mrr > 0
)

select * from final
