-- Loaded subscription events with every staged column, the customer's plan and MRR after each
-- one and the movement it causes: int_subscription_event_states joined to the staged values.
-- A view: for analysts, and for the few rows int_customers reads; writing this 8M-row wide table
-- cost more than any model that reads it.
-- materialized: view
select
    staged.event_id,
    staged.customer_id,
    staged.occurred_at,
    staged.event_type,
    staged.plan,
    staged.price,
    staged.billing_period,
    staged.currency,
    staged.mrr,
    staged.channel,
    staged.segment,
    states.event_seq,
    states.is_before_first_subscribed,
    states.is_trial_cancellation,
    states.spell_number,
    states.plan_after,
    states.mrr_before,
    states.mrr_after,
    states.movement,
    states.event_month,
    staged.source_file,
    staged.source_row
from staging.int_subscription_event_states as states
-- event_id is unique among loaded events: repeats are quarantined as duplicates
inner join staging.stg_subscription_events as staged
    on
        staged.event_id = states.event_id
        and staged.quarantine_reason is null
