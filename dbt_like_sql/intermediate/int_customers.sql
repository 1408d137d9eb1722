-- One row per customer and basis with signup, cohort, channel, segment and first churn.
-- Only customers who signed up by as_of appear.
with observation as (
    select * from staging.int_observation_window
),

first_spells as (
    select * from staging.int_customer_spells
    where spell_number = 1
),

-- channel and segment come from the first `subscribed` event (`new` implies `subscribed`; saying
-- so lets the filter reach the staged rows before the join)
subscription_signups as (
    select
        customer_id,
        channel,
        segment,
        plan as signup_plan,
        price as signup_price,
        mrr as signup_mrr
    from staging.int_subscription_events
    where movement = 'new' and event_type = 'subscribed'
),

-- channel comes from the customer's first order
order_signups as (
    select
        customer_id,
        first(channel order by ordered_at, order_id) as channel,
        'unknown' as segment,
        null::varchar as signup_plan,
        null::double as signup_price,
        null::double as signup_mrr
    from staging.int_orders
    group by customer_id
),

-- net revenue of an orders customer's signup month: their value at acquisition
order_signup_values as (
    select
        spells.customer_id,
        months.revenue as signup_value
    from staging.int_customer_spells as spells
    inner join staging.int_order_months as months
        on months.customer_id = spells.customer_id and months.order_month = spells.spell_start_month
    where spells.basis = 'orders' and spells.spell_number = 1
),

signups as (
    select
        'subscription' as basis,
        *
    from subscription_signups
    union all
    select
        'orders' as basis,
        *
    from order_signups
),

final as (
    select
        spells.basis,
        spells.customer_id,
        spells.spell_start_at as signup_at,
        spells.spell_start_month as cohort_month,
        signups.channel,
        signups.segment,
        signups.signup_plan,
        signups.signup_price,
        signups.signup_mrr,
        case when spells.basis = 'subscription' then signups.signup_mrr else order_signup_values.signup_value end
            as signup_value,
        spells.spell_end_at as first_churn_at,
        spells.spell_end_month as first_churn_month,
        spells.end_kind as first_churn_kind,
        months_between(spells.spell_start_month, spells.spell_end_month) as first_churn_lifetime_month,
        months_between(spells.spell_start_month, observation.last_complete_month) as last_observed_lifetime_month
    from first_spells as spells
    inner join signups using (basis, customer_id)
    left join order_signup_values on spells.basis = 'orders' and order_signup_values.customer_id = spells.customer_id
    cross join observation
)

select * from final
