-- Subscription MRR as intervals: from each loaded event to the customer's next one, the MRR
-- held in between. Observed up to as_of; zero-MRR intervals are left out.
with events as (
    select * from staging.int_observed_subscription_events
),

segments as (
    select
        customer_id,
        occurred_at as segment_start_at,
        lead(occurred_at) over (partition by customer_id order by event_seq) as segment_end_at,
        mrr_after as mrr
    from events
),

final as (
    select
        customer_id,
        segment_start_at,
        segment_end_at,
        mrr,
        month_of(segment_start_at, $timezone) as segment_start_month,
        month_of(segment_end_at, $timezone) as segment_end_month
    from segments
    where mrr > 0
)

select * from final
