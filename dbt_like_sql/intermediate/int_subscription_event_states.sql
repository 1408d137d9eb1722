-- Loaded subscription events, narrow (keys, time, the event's plan and MRR), with the customer's
-- plan and MRR after each one, the movement it causes (new, reactivation, expansion,
-- contraction, churn) and when the customer's next loaded event happens: the events of
-- int_subscription_events_lifecycle that do not contradict the lifecycle. The models downstream
-- read this; int_subscription_events adds the staged columns for analysts.
-- materialized: view
select
    * exclude (lifecycle_error, delivery_month),
    event_type = 'cancelled' and is_before_first_subscribed as is_trial_cancellation
from staging.int_subscription_events_lifecycle
where lifecycle_error is null
