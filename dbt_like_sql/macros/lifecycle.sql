-- Subscription event types in lifecycle order: at the same instant a trial starts before a
-- subscription, and anything that needs an active subscription comes before a churn.
create or replace temp macro lifecycle_event_types() as
[
    'trial_started', 'subscribed', 'reactivated', 'renewed', 'plan_changed',
    'price_changed', 'payment_failed', 'cancelled', 'expired'
];

-- An event's place in the lifecycle order as one number: its time, then its type's rank as the
-- last digit (hugeint: any timestamp * 10 fits), so a running max finds the last event of a kind;
-- and the rank read back from a key (a key before 1970 is negative, hence the positive remainder).
create or replace temp macro lifecycle_key(occurred_at, type_rank) as
epoch_us(occurred_at)::hugeint * 10 + type_rank;

create or replace temp macro key_rank(event_key) as
(event_key % 10 + 10) % 10;

-- The plan and MRR a customer has after one of their subscription events, and the MRR before it,
-- from values carried through their earlier events (int_subscription_events_lifecycle and
-- int_subscription_event_states). Nothing is carried before the first subscribed; a churn ends
-- the plan and leaves 0 MRR.

create or replace temp macro plan_after(event_type, is_before_first_subscribed, plan_so_far) as
case
    when is_before_first_subscribed or event_type in ('cancelled', 'expired') then null
    else plan_so_far
end;

create or replace temp macro mrr_after(event_type, is_before_first_subscribed, mrr_so_far) as
case
    when is_before_first_subscribed then null
    when event_type in ('cancelled', 'expired') then 0.0
    else mrr_so_far
end;

-- MRR before an event = after the previous one
create or replace temp macro mrr_before(previous_event_type, previous_is_before_first_subscribed, mrr_so_far_before) as
case
    when previous_event_type is null or previous_is_before_first_subscribed then 0.0
    when previous_event_type in ('cancelled', 'expired') then 0.0
    else coalesce(mrr_so_far_before, 0.0)
end;

-- The movement an event causes (none before the first subscribed, nor for an event that
-- contradicts the lifecycle); spell_number and the MRR around it are the carried values.
create or replace temp macro lifecycle_movement(
    event_type, lifecycle_error, is_before_first_subscribed, spell_number, mrr_before, mrr_after
) as
case
    when lifecycle_error is not null or is_before_first_subscribed then null
    when event_type = 'subscribed' and spell_number = 1 then 'new'
    when event_type in ('subscribed', 'reactivated') then 'reactivation'
    when event_type = 'cancelled' then 'voluntary_churn'
    when event_type = 'expired' then 'involuntary_churn'
    when event_type in ('plan_changed', 'price_changed') and mrr_after > mrr_before then 'expansion'
    when event_type in ('plan_changed', 'price_changed') and mrr_after < mrr_before then 'contraction'
end;

-- The second pass of int_subscription_events_lifecycle (its post hook): the carried values of
-- every event of a customer with an event that contradicts the lifecycle, from their valid events
-- only (an invalid event carries nothing, so gets nulls). `lifecycle_table` is that table, whose
-- columns this reads are ones the pass does not write.
create or replace temp macro recarried_values(lifecycle_table) as table
    with contradicted_customers_events as (
        select *
        from query_table(lifecycle_table)
        where customer_id in (
            select contradicted.customer_id from query_table(lifecycle_table) as contradicted
            where contradicted.lifecycle_error is not null
        )
    ),

    recarried as (
        select
            event_id,
            event_type,
            is_before_first_subscribed,
            (count(*) filter (where event_type in ('subscribed', 'reactivated')) over so_far)::integer as spell_number,
            last_value(plan ignore nulls) over so_far as plan_so_far,
            last_value(mrr ignore nulls) over so_far as mrr_so_far,
            last_value(mrr ignore nulls) over before as mrr_so_far_before,
            lag(event_type) over by_seq as previous_event_type,
            lag(is_before_first_subscribed) over by_seq as previous_is_before_first_subscribed,
            lead(occurred_at) over by_seq as next_event_at
        from contradicted_customers_events
        where lifecycle_error is null
        window
            by_seq as (partition by customer_id order by event_seq),
            so_far as (by_seq rows between unbounded preceding and current row),
            before as (by_seq rows between unbounded preceding and 1 preceding)
    )

    select
        event_id,
        spell_number,
        plan_after(event_type, is_before_first_subscribed, plan_so_far) as plan_after,
        mrr_before(previous_event_type, previous_is_before_first_subscribed, mrr_so_far_before) as mrr_before,
        mrr_after(event_type, is_before_first_subscribed, mrr_so_far) as mrr_after,
        next_event_at
    from recarried
    union all
    select
        event_id,
        null as spell_number,
        null as plan_after,
        null as mrr_before,
        null as mrr_after,
        null as next_event_at
    from contradicted_customers_events
    where lifecycle_error is not null;
