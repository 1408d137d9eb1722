-- Loaded subscription events with the customer's plan and MRR after each one and the
-- movement it causes (new, reactivation, expansion, contraction, churn).
with events as (
    select * from staging.int_subscription_events_lifecycle where lifecycle_error is null
),

-- plan and MRR carried forward through events that do not set them (windows over narrow rows)
carried_keys as (
    select
        customer_id,
        event_id,
        event_seq,
        event_type = 'cancelled' and is_before_first_subscribed as is_trial_cancellation,
        case
            when is_before_first_subscribed then null
            when event_type in ('cancelled', 'expired') then 0.0
            else last_value(mrr ignore nulls) over customer_so_far
        end as mrr_after,
        case
            when is_before_first_subscribed then null
            when event_type in ('cancelled', 'expired') then null
            else last_value(plan ignore nulls) over customer_so_far
        end as plan_after,
        (count(*) filter (where event_type in ('subscribed', 'reactivated')) over customer_so_far)::integer as spell_number
    from (select customer_id, event_id, event_seq, event_type, mrr, plan, is_before_first_subscribed from events)
    window customer_so_far as (
        partition by customer_id order by event_seq rows between unbounded preceding and current row
    )
),

keys_with_before as (
    select
        * exclude (customer_id, event_seq),
        coalesce(lag(mrr_after) over (partition by customer_id order by event_seq), 0.0) as mrr_before
    from carried_keys
),

with_before as (
    select events.*, keys_with_before.* exclude (event_id)
    from events
    inner join keys_with_before using (event_id)
),

final as (
    select
        event_id,
        customer_id,
        occurred_at,
        event_type,
        plan,
        price,
        billing_period,
        currency,
        mrr,
        channel,
        segment,
        event_seq,
        is_before_first_subscribed,
        is_trial_cancellation,
        spell_number,
        plan_after,
        coalesce(mrr_before, 0.0) as mrr_before,
        mrr_after,
        case
            when is_before_first_subscribed then null
            when event_type = 'subscribed' and spell_number = 1 then 'new'
            when event_type in ('subscribed', 'reactivated') then 'reactivation'
            when event_type = 'cancelled' then 'voluntary_churn'
            when event_type = 'expired' then 'involuntary_churn'
            when event_type in ('plan_changed', 'price_changed') and mrr_after > mrr_before then 'expansion'
            when event_type in ('plan_changed', 'price_changed') and mrr_after < mrr_before then 'contraction'
        end as movement,
        source_file,
        source_row
    from with_before
)

select * from final
