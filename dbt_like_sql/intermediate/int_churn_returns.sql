-- One row per churn (end of a spell) observed by as_of: when the customer came back, if
-- they did, and how long after the churn we could watch for a return.
with observation as (
    select * from staging.int_observation_window
),

spells as (
    select * from staging.int_customer_spells
),

returns as (
    select
        basis,
        customer_id,
        spell_number,
        spell_end_at as churned_at,
        spell_end_month as churn_month,
        end_kind,
        lead(spell_start_at) over (partition by basis, customer_id order by spell_number) as returned_at
    from spells
),

final as (
    select
        returns.*,
        date_diff('second', churned_at, returned_at) / 86400.0 as days_to_return,
        date_diff('second', churned_at, observation.as_of) / 86400.0 as days_observed
    from returns, observation
    where churned_at is not null
)

select * from final
