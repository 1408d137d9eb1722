-- Price changes applied to existing customers (`price_changed` events), and the churn
-- exposure around each: customer-months at risk and churns per month, for the plan's
-- customers before the change, the repriced customers after it, and customers on other
-- plans (the unaffected comparison) in both windows of $price_change_window_months months.
with observation as (
    select * from staging.int_observation_window
),

-- not materialized: each use reads only its own columns and rows (a shared copy of every
-- observed event costs more than reading the table once per use)
events as not materialized (
    select * from staging.int_observed_subscription_events
),

-- prices are compared as MRR (monthly equivalent, reporting currency)
repriced as (
    select
        plan,
        month_of(occurred_at, $timezone) as change_month,
        customer_id,
        round(mrr_before, 2) as previous_price,
        round(mrr_after, 2) as price
    from events
    where event_type = 'price_changed'
),

changes as (
    select
        plan,
        change_month,
        mode(previous_price order by previous_price) as old_price,
        mode(price order by price) as new_price,
        count(distinct customer_id) as customers_affected
    from repriced
    group by plan, change_month
),

window_months as (
    select
        changes.plan,
        changes.change_month,
        unnest(generate_series(
            changes.change_month - to_months($price_change_window_months::integer),
            changes.change_month + to_months($price_change_window_months::integer - 1),
            interval 1 month
        ))::date as month
    from changes
),

observed_months as (
    select
        window_months.*,
        local_instant(window_months.month::timestamp, $timezone) as month_start_at
    from window_months, observation
    where window_months.month <= observation.last_complete_month
),

spells as (
    select * from staging.int_customer_spells
    where basis = 'subscription'
),

-- customers active when each window month starts, and whether they churn in it
at_risk as (
    select
        months.plan as changed_plan,
        months.change_month,
        months.month,
        months.month_start_at,
        spells.customer_id,
        spells.spell_end_month is not null and spells.spell_end_month = months.month as churned
    from observed_months as months
    inner join spells
        on
            spells.spell_start_at < months.month_start_at
            and (spells.spell_end_at is null or spells.spell_end_at >= months.month_start_at)
),

-- each customer's plan when the month starts: the plan after their last event before it, which
-- is the event whose next one comes at or after the start (or never). Exactly one event matches,
-- also when several share an instant; only events that span some window month's start can.
spanning_events as (
    select
        customer_id,
        occurred_at,
        next_event_at,
        plan_after
    from events
    where
        occurred_at < (select max(month_start_at) from observed_months)
        and (next_event_at is null or next_event_at >= (select min(month_start_at) from observed_months))
),

with_plan as (
    select
        at_risk.*,
        spanning_events.plan_after as plan_at_start
    from at_risk
    left join spanning_events
        on
            spanning_events.customer_id = at_risk.customer_id
            and spanning_events.occurred_at < at_risk.month_start_at
            and (spanning_events.next_event_at is null or spanning_events.next_event_at >= at_risk.month_start_at)
),

roles as (
    select
        with_plan.*,
        case
            when month < change_month and plan_at_start = changed_plan then 'affected'
            when month >= change_month and customer_id in (
                select customer_id from repriced
                where repriced.plan = with_plan.changed_plan and repriced.change_month = with_plan.change_month
            ) then 'affected'
            when coalesce(plan_at_start <> changed_plan, true) then 'unaffected'
        end as role,
        case when month < change_month then 'before' else 'after' end as period
    from with_plan
),

final as (
    select
        changes.plan,
        changes.change_month,
        changes.old_price,
        changes.new_price,
        changes.customers_affected,
        roles.role,
        roles.period,
        count(*) as customer_months,
        count(*) filter (where roles.churned) as churned,
        count(distinct roles.month) as months_observed
    from roles
    inner join changes on changes.plan = roles.changed_plan and changes.change_month = roles.change_month
    where roles.role is not null
    group by all
)

select * from final
order by plan, change_month, role, period
