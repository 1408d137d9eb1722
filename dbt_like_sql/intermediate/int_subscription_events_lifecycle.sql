-- Row-valid subscription events in lifecycle order (keys, time, plan and MRR; the other values,
-- the source row included, stay in stg_subscription_events), each with the reason it
-- contradicts the lifecycle (null when it does not), and the plan and MRR carried through the
-- customer's events.
-- Invalid events never change the state, so the state before an event is the target state of
-- the last activating or ending event before it. The carried columns (spell_number, plan_after,
-- mrr_before, mrr_after, next_event_at) and the movement skip invalid events and are null on them.
-- Everything here comes from one sort of the events (partition by customer, lifecycle order);
-- int_subscription_event_states is its valid events.

-- the event type travels through the sort as its rank in the lifecycle order (1 byte, not a string)
with events as (
    select
        customer_id,
        event_id,
        occurred_at,
        plan,
        mrr,
        list_position(lifecycle_event_types(), event_type)::utinyint as type_rank
    from staging.stg_subscription_events
    where quarantine_reason is null
),

-- the lifecycle order (time, then the type's rank as the last digit) as one number, so a
-- running max finds the last event of a kind; hugeint: any timestamp * 10 fits
keyed as (
    select *, epoch_us(occurred_at)::hugeint * 10 + type_rank as lifecycle_key
    from events
),

-- next_event_at: when the customer's next event happens (MRR intervals end there).
-- The last trial or state event before each one is the one with the largest key; its last digit
-- is its type's rank, so its state (events tied on the key have the same type, so the same
-- state). Every window shares one partition and order, so DuckDB sorts once.
ordered as (
    select
        *,
        row_number() over lifecycle_order as event_seq,
        min(lifecycle_key) filter (where type_rank = 2) over whole_history as first_subscribed_key,
        max(lifecycle_key) filter (where type_rank in (1, 8)) over before as trial_mark,
        max(lifecycle_key) filter (where type_rank in (2, 3, 8, 9)) over before as state_mark,
        last_value(mrr ignore nulls) over so_far as mrr_so_far,
        last_value(plan ignore nulls) over so_far as plan_so_far,
        (count(*) filter (where type_rank in (2, 3)) over so_far)::integer as spell_number,
        last_value(mrr ignore nulls) over before as mrr_so_far_before,
        lag(type_rank) over lifecycle_order as previous_type_rank,
        lag(lifecycle_key) over lifecycle_order as previous_key,
        lead(occurred_at) over lifecycle_order as next_event_at
    from keyed
    window
        lifecycle_order as (partition by customer_id order by lifecycle_key, event_id),
        whole_history as (lifecycle_order rows between unbounded preceding and unbounded following),
        so_far as (lifecycle_order rows between unbounded preceding and current row),
        before as (lifecycle_order rows between unbounded preceding and 1 preceding)
),

-- an event is before the first subscribed when its key is below that event's: events tied with
-- it on the key are `subscribed` too, and so not before it. Trial events count only before the
-- first subscribed, and subscription states only from it on, so trial_state_before is null
-- from the first subscribed on. (A key before 1970 is negative, hence the positive remainder.)
states as (
    select
        *,
        lifecycle_event_types()[type_rank] as event_type,
        lifecycle_event_types()[previous_type_rank] as previous_event_type,
        first_subscribed_key is null or lifecycle_key < first_subscribed_key as is_before_first_subscribed,
        case
            when lifecycle_key >= first_subscribed_key then null
            when (trial_mark % 10 + 10) % 10 = 1 then 'trialing'
            when (trial_mark % 10 + 10) % 10 = 8 then 'not_trialing'
        end as trial_state_before,
        case
            when first_subscribed_key is null or state_mark < first_subscribed_key then null
            when (state_mark % 10 + 10) % 10 in (2, 3) then 'active'
            when (state_mark % 10 + 10) % 10 in (8, 9) then 'churned'
        end as state_before,
        previous_key is not null and (first_subscribed_key is null or previous_key < first_subscribed_key)
            as previous_is_before_first_subscribed
    from ordered
),

checked as materialized (
    select
        event_id,
        customer_id,
        event_type,
        occurred_at,
        event_seq,
        is_before_first_subscribed,
        trial_state_before,
        state_before,
        case
            when is_before_first_subscribed then
                case
                    when event_type = 'trial_started' and trial_state_before is distinct from 'trialing' then null
                    when event_type = 'trial_started' then 'trial_started while a trial is open'
                    when event_type = 'cancelled' and trial_state_before = 'trialing' then null
                    else event_type || ' before the customer''s first subscribed'
                end
            when event_type = 'trial_started' then 'trial_started after the customer''s first subscribed'
            when event_type in ('subscribed', 'reactivated') then
                case when state_before = 'active' then event_type || ' while already subscribed' end
            when state_before is distinct from 'active' then event_type || ' with no active subscription'
        end as lifecycle_error,
        plan,
        mrr,
        spell_number,
        plan_after(event_type, is_before_first_subscribed, plan_so_far) as plan_after,
        mrr_before(previous_event_type, previous_is_before_first_subscribed, mrr_so_far_before) as mrr_before,
        mrr_after(event_type, is_before_first_subscribed, mrr_so_far) as mrr_after,
        next_event_at
    from states
),

-- a customer with an event that contradicts the lifecycle gets their carried values again,
-- from their other events only: `ordered`'s carrying windows over fewer rows (usually no
-- customer has one, so this sorts next to nothing)
contradicted_customers as (
    select distinct customer_id from checked where lifecycle_error is not null
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
    from checked
    where lifecycle_error is null
        and customer_id in (select customer_id from contradicted_customers)
    window
        by_seq as (partition by customer_id order by event_seq),
        so_far as (by_seq rows between unbounded preceding and current row),
        before as (by_seq rows between unbounded preceding and 1 preceding)
),

recomputed as (
    select
        event_id,
        spell_number,
        plan_after(event_type, is_before_first_subscribed, plan_so_far) as plan_after,
        mrr_before(previous_event_type, previous_is_before_first_subscribed, mrr_so_far_before) as mrr_before,
        mrr_after(event_type, is_before_first_subscribed, mrr_so_far) as mrr_after,
        next_event_at
    from recarried
),

-- a contradicted customer's events take their values from `recomputed`, which has none for the
-- invalid ones (an invalid event carries nothing); event_id is unique among loaded events
carried as (
    select
        checked.* exclude (spell_number, plan_after, mrr_before, mrr_after, next_event_at),
        recomputed.event_id is not null or checked.lifecycle_error is not null as is_recarried,
        if(is_recarried, recomputed.spell_number, checked.spell_number) as spell_number,
        if(is_recarried, recomputed.plan_after, checked.plan_after) as plan_after,
        if(is_recarried, recomputed.mrr_before, checked.mrr_before) as mrr_before,
        if(is_recarried, recomputed.mrr_after, checked.mrr_after) as mrr_after,
        if(is_recarried, recomputed.next_event_at, checked.next_event_at) as next_event_at
    from checked
    left join recomputed on recomputed.event_id = checked.event_id
),

final as (
    select
        event_id,
        customer_id,
        event_type,
        occurred_at,
        event_seq,
        is_before_first_subscribed,
        trial_state_before,
        state_before,
        lifecycle_error,
        plan,
        mrr,
        event_type = 'cancelled' and is_before_first_subscribed as is_trial_cancellation,
        spell_number,
        plan_after,
        mrr_before,
        mrr_after,
        next_event_at,
        case
            when lifecycle_error is not null or is_before_first_subscribed then null
            when event_type = 'subscribed' and spell_number = 1 then 'new'
            when event_type in ('subscribed', 'reactivated') then 'reactivation'
            when event_type = 'cancelled' then 'voluntary_churn'
            when event_type = 'expired' then 'involuntary_churn'
            when event_type in ('plan_changed', 'price_changed') and mrr_after > mrr_before then 'expansion'
            when event_type in ('plan_changed', 'price_changed') and mrr_after < mrr_before then 'contraction'
        end as movement,
        month_of(occurred_at, $timezone) as event_month,
        month_of(next_event_at, $timezone) as next_event_month
    from carried
)

select * from final
