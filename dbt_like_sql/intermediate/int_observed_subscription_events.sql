-- Loaded subscription events from the first `subscribed` on, up to as_of: what every
-- analysis of subscriptions observes. Narrow, as int_subscription_event_states (join
-- int_subscription_events by event_id for channel, segment, price and the source row).
-- materialized: view
with observation as (
    select * from staging.int_observation_window
),

events as (
    select * from staging.int_subscription_event_states
),

final as (
    select events.*
    from events, observation
    where
        events.occurred_at <= observation.as_of
        and not events.is_before_first_subscribed
)

select * from final
