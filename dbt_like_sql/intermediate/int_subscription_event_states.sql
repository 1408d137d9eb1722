-- Loaded subscription events, narrow (keys, time, the event's plan and MRR), with the customer's
-- plan and MRR after each one and the movement it causes (new, reactivation, expansion,
-- contraction, churn). The models downstream read this; int_subscription_events adds the
-- staged columns for analysts.
with lifecycle as (
    select * from staging.int_subscription_events_lifecycle where lifecycle_error is null
),

-- plan and MRR carried forward through events that do not set them; one sort serves every
-- window (same partition and order), over the narrow lifecycle rows
carried as (
    select
        event_id,
        customer_id,
        event_type,
        occurred_at,
        plan,
        mrr,
        event_seq,
        is_before_first_subscribed,
        event_type = 'cancelled' and is_before_first_subscribed as is_trial_cancellation,
        last_value(mrr ignore nulls) over so_far as mrr_so_far,
        last_value(plan ignore nulls) over so_far as plan_so_far,
        (count(*) filter (where event_type in ('subscribed', 'reactivated')) over so_far)::integer as spell_number,
        last_value(mrr ignore nulls) over before as mrr_so_far_before,
        lag(event_type) over by_seq as previous_event_type,
        lag(is_before_first_subscribed) over by_seq as previous_is_before_first_subscribed
    from lifecycle
    window
        by_seq as (partition by customer_id order by event_seq),
        so_far as (partition by customer_id order by event_seq rows between unbounded preceding and current row),
        before as (partition by customer_id order by event_seq rows between unbounded preceding and 1 preceding)
),

-- MRR after an event, and before it (= after the previous one: nothing before the first
-- subscribed, nothing after a churn)
with_mrr as (
    select
        * exclude (mrr_so_far, mrr_so_far_before, plan_so_far, previous_event_type, previous_is_before_first_subscribed),
        case
            when is_before_first_subscribed or event_type in ('cancelled', 'expired') then null
            else plan_so_far
        end as plan_after,
        case
            when is_before_first_subscribed then null
            when event_type in ('cancelled', 'expired') then 0.0
            else mrr_so_far
        end as mrr_after,
        case
            when previous_event_type is null or previous_is_before_first_subscribed then 0.0
            when previous_event_type in ('cancelled', 'expired') then 0.0
            else coalesce(mrr_so_far_before, 0.0)
        end as mrr_before
    from carried
),

final as (
    select
        event_id,
        customer_id,
        occurred_at,
        event_type,
        plan,
        mrr,
        event_seq,
        is_before_first_subscribed,
        is_trial_cancellation,
        spell_number,
        plan_after,
        mrr_before,
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
        month_of(occurred_at, $timezone) as event_month
    from with_mrr
)

select * from final
