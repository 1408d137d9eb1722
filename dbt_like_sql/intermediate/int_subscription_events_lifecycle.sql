-- Row-valid subscription events in lifecycle order, each with the reason it contradicts
-- the lifecycle (null when it does not). Invalid events never change the state, so the
-- state before an event is the target state of the last activating or ending event before it.
with events as (
    select * from staging.stg_subscription_events where quarantine_reason is null
),

-- one total order per customer: time, then a fixed order of event kinds, then id
sequenced as (
    select
        *,
        row_number() over (
            partition by customer_id
            order by occurred_at,
                list_position(
                    ['trial_started', 'subscribed', 'reactivated', 'renewed', 'plan_changed',
                     'price_changed', 'payment_failed', 'cancelled', 'expired'],
                    event_type
                ),
                event_id
        ) as event_seq
    from events
),

first_subscribed as (
    select customer_id, min(event_seq) as first_subscribed_seq
    from sequenced
    where event_type = 'subscribed'
    group by customer_id
),

phased as (
    select
        sequenced.*,
        first_subscribed.first_subscribed_seq is null
            or sequenced.event_seq < first_subscribed.first_subscribed_seq as is_before_first_subscribed
    from sequenced
    left join first_subscribed using (customer_id)
),

-- the state just before each event, before and after the first subscription
with_state as (
    select
        *,
        last_value(
            case
                when is_before_first_subscribed and event_type = 'trial_started' then 'trialing'
                when is_before_first_subscribed and event_type = 'cancelled' then 'not_trialing'
            end ignore nulls
        ) over customer_before as trial_state_before,
        last_value(
            case
                when not is_before_first_subscribed and event_type in ('subscribed', 'reactivated') then 'active'
                when not is_before_first_subscribed and event_type in ('cancelled', 'expired') then 'churned'
            end ignore nulls
        ) over customer_before as state_before
    from phased
    window customer_before as (
        partition by customer_id order by event_seq rows between unbounded preceding and 1 preceding
    )
),

final as (
    select
        *,
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
        end as lifecycle_error
    from with_state
)

select * from final
