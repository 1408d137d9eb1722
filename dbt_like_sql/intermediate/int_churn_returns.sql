-- One row per churn (end of a spell) observed by as_of: when the customer came back, if
-- they did, and how long after the churn we could watch for a return.
with observation as (
    select * from staging.int_observation_window
),

spells as (
    select * from staging.int_customer_spells
),

-- a return is the customer's next spell (a hash join on its number: cheaper than sorting every spell)
returns as (
    select
        ended.basis,
        ended.customer_id,
        ended.spell_number,
        ended.spell_end_at as churned_at,
        ended.spell_end_month as churn_month,
        ended.end_kind,
        next_spells.spell_start_at as returned_at
    from spells as ended
    left join spells as next_spells
        on
            next_spells.basis = ended.basis
            and next_spells.customer_id = ended.customer_id
            and next_spells.spell_number = ended.spell_number + 1
    where ended.spell_end_at is not null
),

final as (
    select
        returns.*,
        seconds_between(churned_at, returned_at) / 86400.0 as days_to_return,
        seconds_between(churned_at, observation.as_of) / 86400.0 as days_observed
    from returns, observation
)

select * from final
