-- Each row of the plan history becomes an event: the trial plan starts a trial, the first
-- paid plan (or the first after a churn) is `subscribed`, later paid plans `plan_changed`
-- (the annual plan billed per year, so its MRR is price / 12), the churn plan `cancelled`.
with history as (
    select * from raw.src_subscriptions
),

plans as (
    select
        trim(plan_id) as plan_id,
        trim(plan_name) as plan_name,
        trim(price) as price
    from raw.src_plans
),

-- each customer's plans in order, and the one before
ordered as (
    select
        trim(history.customer_id) as customer_id,
        trim(history.plan_id) as plan_id,
        trim(history.start_date) as start_date,
        plans.plan_name,
        plans.price,
        row_number()
            over (
                partition by trim(history.customer_id)
                order by trim(history.start_date), trim(history.plan_id), history.source_row
            )
            as step,
        history.source_file,
        history.source_row
    from history
    left join plans on plans.plan_id = trim(history.plan_id)
),

with_previous as (
    select
        *,
        lag(plan_id) over (partition by customer_id order by step) as previous_plan_id,
        count(*) filter (where plan_id not in ($trial_plan_id::varchar, $churn_plan_id::varchar)) over (
            partition by customer_id order by step rows between unbounded preceding and 1 preceding
        ) as paid_plans_before
    from ordered
),

final as (
    select
        customer_id || '-' || step as event_id,
        customer_id,
        start_date as occurred_at,
        case
            when plan_id = $trial_plan_id::varchar then 'trial_started'
            when plan_id = $churn_plan_id::varchar then 'cancelled'
            when paid_plans_before = 0 or previous_plan_id = $churn_plan_id::varchar then 'subscribed'
            else 'plan_changed'
        end as event_type,
        case when plan_id not in ($trial_plan_id::varchar, $churn_plan_id::varchar) then plan_name end as plan,
        case when plan_id not in ($trial_plan_id::varchar, $churn_plan_id::varchar) then price end as price,
        case
            when plan_id = $annual_plan_id::varchar then 'year'
            when plan_id not in ($trial_plan_id::varchar, $churn_plan_id::varchar) then 'month'
        end as billing_period,
        null as currency,
        null as channel,
        null as segment,
        source_file,
        source_row
    from with_previous
)

select * from final
