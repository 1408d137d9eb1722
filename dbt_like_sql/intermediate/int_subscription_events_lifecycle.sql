-- Row-valid subscription events in lifecycle order (keys, time, plan and MRR; the other values,
-- the source row included, stay in stg_subscription_events), each with the reason it
-- contradicts the lifecycle (null when it does not), and the plan and MRR carried through the
-- customer's events.
-- Invalid events never change the state, so the state before an event is the target state of
-- the last activating or ending event before it. The carried columns (spell_number, plan_after,
-- mrr_before, mrr_after, next_event_at) and the movement skip invalid events and are null on them.
-- Everything here comes from one sort of the events (partition by customer, lifecycle order);
-- the post hook at the end redoes the carried values of customers with a contradiction.
-- int_subscription_event_states is its valid events.
-- materialized: incremental
-- incremental_source: staging.stg_subscription_events
-- unique_key: event_id

-- the event type travels through the sort as its rank in the lifecycle order (1 byte, not a string)
with staged_events as not materialized (
    select
        customer_id,
        event_id,
        occurred_at,
        plan,
        mrr,
        list_position(lifecycle_event_types(), event_type)::utinyint as type_rank,
        delivery_month
    from staging.stg_subscription_events
    where quarantine_reason is null
),

{% if is_incremental() %}
-- An append continues each customer's history from the last event the table keeps (in the
-- months not appended), when that event is clean and every new event comes after it: every
-- value here is a running value in lifecycle order, so the new events need only the running
-- values after that event ("priors"), and that event a new next_event_at. Any other customer
-- touched by the append (an earlier month redelivered, a contradiction in the kept events, top-
-- level rows in between) has their whole history recomputed, with no priors.
appended_events as materialized (
    select * from staged_events
    where list_contains($append_months, coalesce(delivery_month, ''))
),

-- per touched customer: their last kept event, and whether the appended months' old events came before it
kept as (
    select
        customer_id,
        arg_max(event_id, event_seq) filter (where not is_appended) as last_kept_event_id,
        arg_max(row_id, event_seq) filter (where not is_appended) as last_kept_row_id,
        max(event_seq) filter (where not is_appended) as kept_seq,
        min(event_seq) filter (where is_appended) as first_replaced_seq,
        coalesce(bool_or(lifecycle_error is not null) filter (where not is_appended), false) as kept_contradiction
    from (
        select
            rowid as row_id,
            customer_id,
            event_id,
            event_seq,
            lifecycle_error,
            list_contains($append_months, coalesce(delivery_month, '')) as is_appended
        from {{ this }}
    )
    where is_appended or customer_id in (select customer_id from appended_events)
    group by customer_id
),

-- those events' whole rows, fetched by row id, so DuckDB reads only those rows (a filter on
-- event id, or carrying whole rows through the aggregate, reads far more)
last_kept_rows as (
    select
        event_id,
        lifecycle as last_kept,
        lifecycle_key(occurred_at, list_position(lifecycle_event_types(), event_type)) as last_key
    from {{ this }} as lifecycle
    where rowid in (select last_kept_row_id from kept)
),

first_appended as (
    select customer_id, min(lifecycle_key(occurred_at, type_rank)) as first_key
    from appended_events
    group by customer_id
),

continuable as materialized (
    select
        customer_id,
        last_kept_rows.last_kept,
        last_kept_rows.last_key
    from first_appended
    left join kept using (customer_id)
    left join last_kept_rows on last_kept_rows.event_id = kept.last_kept_event_id
    where kept.last_kept_event_id is null
        or (not kept.kept_contradiction
            and (kept.first_replaced_seq is null or kept.first_replaced_seq > kept.kept_seq)
            and first_appended.first_key > last_kept_rows.last_key)
),

-- the running values after the last kept event. The marks keep that event's instant and take
-- the state's rank as last digit: a clean event before the first subscribed is a trial start or a
-- trial cancellation, and after it every clean event but a churn leaves the customer active.
-- After the first subscribed, any key below every new one stands in for that subscribed's key.
priors as (
    select
        customer_id,
        last_kept.event_seq as prior_event_seq,
        if(last_kept.is_before_first_subscribed, null, -170141183460469231731687303715884105727::hugeint)
            as prior_first_subscribed_key,
        last_key - key_rank(last_key) + case
            when not last_kept.is_before_first_subscribed then null
            when last_kept.event_type = 'trial_started' then 1
            when last_kept.event_type = 'cancelled' then 8
        end as prior_trial_mark,
        last_key - key_rank(last_key) + case
            when last_kept.is_before_first_subscribed then null
            when last_kept.event_type in ('cancelled', 'expired') then 8
            else 2
        end as prior_state_mark,
        last_kept.plan_after as prior_plan,
        last_kept.mrr_after as prior_mrr,
        last_kept.spell_number as prior_spell_number,
        list_position(lifecycle_event_types(), last_kept.event_type)::utinyint as prior_type_rank,
        last_key as prior_key
    from continuable
    where last_kept is not null
),

recomputed_customers as (
    select customer_id from kept
    where customer_id not in (select customer_id from continuable)
),

events as (
    select * from appended_events
    where customer_id in (select customer_id from continuable)
    union all
    select * from staged_events
    where customer_id in (select customer_id from recomputed_customers)
),
{% else %}
events as (
    select * from staged_events
),
{% endif %}

-- the lifecycle order as one number (macros/lifecycle.sql)
keyed as (
    select
        *,
        lifecycle_key(occurred_at, type_rank) as lifecycle_key
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

{% if is_incremental() %}
-- an append's running values go on from the priors
continued as (
    select
        ordered.* replace (
            event_seq + coalesce(prior_event_seq, 0) as event_seq,
            coalesce(prior_first_subscribed_key, first_subscribed_key) as first_subscribed_key,
            coalesce(trial_mark, prior_trial_mark) as trial_mark,
            coalesce(state_mark, prior_state_mark) as state_mark,
            coalesce(mrr_so_far, prior_mrr) as mrr_so_far,
            coalesce(plan_so_far, prior_plan) as plan_so_far,
            spell_number + coalesce(prior_spell_number, 0) as spell_number,
            coalesce(mrr_so_far_before, prior_mrr) as mrr_so_far_before,
            coalesce(previous_type_rank, prior_type_rank) as previous_type_rank,
            coalesce(previous_key, prior_key) as previous_key
        )
    from ordered
    left join priors using (customer_id)
),
{% else %}
-- a full build continues no history
continued as (
    select * from ordered
),
{% endif %}

-- an event is before the first subscribed when its key is below that event's: events tied with
-- it on the key are `subscribed` too, and so not before it. Trial events count only before the
-- first subscribed, and subscription states only from it on, so trial_state_before is null
-- from the first subscribed on.
states as (
    select
        *,
        lifecycle_event_types()[type_rank] as event_type,
        lifecycle_event_types()[previous_type_rank] as previous_event_type,
        first_subscribed_key is null or lifecycle_key < first_subscribed_key as is_before_first_subscribed,
        case
            when lifecycle_key >= first_subscribed_key then null
            when key_rank(trial_mark) = 1 then 'trialing'
            when key_rank(trial_mark) = 8 then 'not_trialing'
        end as trial_state_before,
        case
            when first_subscribed_key is null or state_mark < first_subscribed_key then null
            when key_rank(state_mark) in (2, 3) then 'active'
            when key_rank(state_mark) in (8, 9) then 'churned'
        end as state_before,
        previous_key is not null and (first_subscribed_key is null or previous_key < first_subscribed_key)
            as previous_is_before_first_subscribed
    from continued
),

checked as (
    select
        event_id,
        customer_id,
        event_type,
        occurred_at,
        event_seq,
        is_before_first_subscribed,
        case
            when is_before_first_subscribed
                then
                    case
                        when event_type = 'trial_started' and coalesce(trial_state_before <> 'trialing', true) then null
                        when event_type = 'trial_started' then 'trial_started while a trial is open'
                        when event_type = 'cancelled' and trial_state_before = 'trialing' then null
                        else event_type || ' before the customer''s first subscribed'
                    end
            when event_type = 'trial_started' then 'trial_started after the customer''s first subscribed'
            when event_type in ('subscribed', 'reactivated')
                then
                    case when state_before = 'active' then event_type || ' while already subscribed' end
            when coalesce(state_before <> 'active', true) then event_type || ' with no active subscription'
        end as lifecycle_error,
        plan,
        mrr,
        spell_number,
        plan_after(event_type, is_before_first_subscribed, plan_so_far) as plan_after,
        mrr_before(previous_event_type, previous_is_before_first_subscribed, mrr_so_far_before) as mrr_before,
        mrr_after(event_type, is_before_first_subscribed, mrr_so_far) as mrr_after,
        next_event_at,
        delivery_month
    from states
),

final as (
    select
        * exclude (delivery_month),
        lifecycle_movement(event_type, lifecycle_error, is_before_first_subscribed, spell_number, mrr_before, mrr_after)
            as movement,
        month_of(occurred_at, $timezone) as event_month,
        month_of(next_event_at, $timezone) as next_event_month,
        delivery_month
    from checked
)

{% if is_incremental() %}
-- a continued customer's last kept event gets the first new event as its next (the post hook
-- makes it the first valid one when the customer now has a contradiction)
, next_after_kept as (
    select customer_id, min(occurred_at) as next_event_at
    from final
    where customer_id in (select customer_id from priors)
    group by customer_id
),

relinked as (
    select
        kept_event.* replace (
            next_after_kept.next_event_at as next_event_at,
            month_of(next_after_kept.next_event_at, $timezone) as next_event_month
        )
    from (select unnest(last_kept) from continuable where last_kept is not null) as kept_event
    inner join next_after_kept using (customer_id)
)

select * from final
union all by name
select * from relinked
{% else %}
select * from final
{% endif %}

-- post_hook: a customer with an event that contradicts the lifecycle gets their carried values again,
-- from their valid events only (an invalid event carries nothing, so gets nulls): a second pass over
-- those customers' whole history in this table (recarried_values, macros/lifecycle.sql), usually
-- none. In the select above this pass would make DuckDB keep every event in memory until the end.
-- It reads only columns it does not write, so running it again changes nothing; in an append,
-- only customers with new rows can have a new contradiction, and only their rows change.
update {{ this }} as lifecycle
set
    spell_number = recomputed.spell_number,
    plan_after = recomputed.plan_after,
    mrr_before = recomputed.mrr_before,
    mrr_after = recomputed.mrr_after,
    next_event_at = recomputed.next_event_at,
    next_event_month = month_of(recomputed.next_event_at, $timezone),
    movement = lifecycle_movement(
        lifecycle.event_type, lifecycle.lifecycle_error, lifecycle.is_before_first_subscribed,
        recomputed.spell_number, recomputed.mrr_before, recomputed.mrr_after
    )
from recarried_values('{{ this }}') as recomputed
where lifecycle.event_id = recomputed.event_id
