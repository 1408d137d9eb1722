-- Row-valid subscription events in lifecycle order (keys, time, plan and MRR; the other values
-- stay in stg_subscription_events), each with the reason it contradicts the lifecycle (null when it
-- does not). Invalid events never change the state, so the state before an event is the
-- target state of the last activating or ending event before it.
with events as (
    select customer_id, event_id, event_type, occurred_at, plan, mrr, source_file, source_row
    from staging.stg_subscription_events
    where quarantine_reason is null
),

-- the windows sort only these narrow rows (an 8M-row wide sort and join back cost twice as much);
-- the sequence and the running count of `subscribed` share one sort: an event is before the
-- customer's first subscribed while no `subscribed` is at or before it
phased as (
    select
        customer_id,
        event_id,
        event_type,
        occurred_at,
        plan,
        mrr,
        source_file,
        source_row,
        row_number() over lifecycle_order as event_seq,
        count(*) filter (where event_type = 'subscribed') over (
            lifecycle_order rows between unbounded preceding and current row
        ) = 0 as is_before_first_subscribed
    from events
    window lifecycle_order as (
        partition by customer_id
        order by occurred_at,
            list_position(
                ['trial_started', 'subscribed', 'reactivated', 'renewed', 'plan_changed',
                 'price_changed', 'payment_failed', 'cancelled', 'expired'],
                event_type
            ),
            event_id
    )
),

-- the last state-setting event before each one, encoded as its sequence * 2 + a state bit,
-- so a running max finds it (much cheaper than last_value ... ignore nulls)
with_state as (
    select
        *,
        max(
            case
                when is_before_first_subscribed and event_type = 'trial_started' then event_seq * 2 + 1
                when is_before_first_subscribed and event_type = 'cancelled' then event_seq * 2
            end
        ) over customer_before as trial_mark,
        max(
            case
                when not is_before_first_subscribed and event_type in ('subscribed', 'reactivated') then event_seq * 2 + 1
                when not is_before_first_subscribed and event_type in ('cancelled', 'expired') then event_seq * 2
            end
        ) over customer_before as state_mark
    from phased
    window customer_before as (
        partition by customer_id order by event_seq rows between unbounded preceding and 1 preceding
    )
),

states as (
    select
        event_id,
        customer_id,
        event_type,
        occurred_at,
        event_seq,
        is_before_first_subscribed,
        case trial_mark % 2 when 1 then 'trialing' when 0 then 'not_trialing' end as trial_state_before,
        case state_mark % 2 when 1 then 'active' when 0 then 'churned' end as state_before,
        plan,
        mrr,
        source_file,
        source_row
    from with_state
),

final as (
    select
        states.event_id,
        states.customer_id,
        states.event_type,
        states.occurred_at,
        states.event_seq,
        states.is_before_first_subscribed,
        states.trial_state_before,
        states.state_before,
        case
            when states.is_before_first_subscribed then
                case
                    when states.event_type = 'trial_started' and states.trial_state_before is distinct from 'trialing' then null
                    when states.event_type = 'trial_started' then 'trial_started while a trial is open'
                    when states.event_type = 'cancelled' and states.trial_state_before = 'trialing' then null
                    else states.event_type || ' before the customer''s first subscribed'
                end
            when states.event_type = 'trial_started' then 'trial_started after the customer''s first subscribed'
            when states.event_type in ('subscribed', 'reactivated') then
                case when states.state_before = 'active' then states.event_type || ' while already subscribed' end
            when states.state_before is distinct from 'active' then states.event_type || ' with no active subscription'
        end as lifecycle_error,
        states.plan,
        states.mrr,
        states.source_file,
        states.source_row
    from states
)

select * from final
