-- What the Kaplan-Meier curves, churn rates and group comparisons read: the observed customers
-- (signed up by the last complete month) counted per basis, grouping, last observed lifetime
-- month and lifetime month of their first churn (null: not churned in an observed month).
-- Bounded by the calendar and the groups, not by customers: the polars steps never read a row
-- per customer. `dimension` names the grouping and `value` its value:
--   all           one group per basis (retention_curve)
--   cohort_month  the signup month, as text YYYY-MM-DD (churn_by_cohort, cohort sizes)
--   channel, segment, signup_plan   null as 'unknown' (churn_by_channel, churn_by_segment)
--   value_tier    Q1..Q4 of value at signup within the basis, 'unknown' without one;
--                 value_tier_bound is the tier's upper bound (Q4: Q3's), for its label
with observation as (
    select * from staging.int_observation_window
),

observed as (
    select
        customers.basis,
        customers.cohort_month,
        customers.channel,
        customers.segment,
        customers.signup_plan,
        customers.signup_value,
        customers.last_observed_lifetime_month,
        case
            when customers.first_churn_lifetime_month <= customers.last_observed_lifetime_month
                then customers.first_churn_lifetime_month
        end as first_churn_lifetime_month
    from staging.int_customers as customers, observation
    where customers.cohort_month <= observation.last_complete_month
),

-- the value at signup in order within the basis, for its quartiles
ranked as (
    select
        basis,
        signup_value,
        row_number() over (partition by basis order by signup_value) - 1 as value_index,
        count(*) over (partition by basis) as valued
    from observed
    where signup_value is not null
),

-- quartile q is the value at index round((n - 1) * q), halves rounded up (polars' 'nearest')
quartiles as (
    select
        basis,
        max(case when value_index = floor((valued - 1) * 0.25 + 0.5) then signup_value end) as q1,
        max(case when value_index = floor((valued - 1) * 0.50 + 0.5) then signup_value end) as q2,
        max(case when value_index = floor((valued - 1) * 0.75 + 0.5) then signup_value end) as q3
    from ranked
    group by basis
),

labelled as (
    select
        observed.basis,
        'all' as "all",
        observed.cohort_month::varchar as cohort_month,
        coalesce(observed.channel, 'unknown') as channel,
        coalesce(observed.segment, 'unknown') as segment,
        coalesce(observed.signup_plan, 'unknown') as signup_plan,
        case
            when observed.signup_value is null then 'unknown'
            when observed.signup_value <= quartiles.q1 then 'Q1'
            when observed.signup_value <= quartiles.q2 then 'Q2'
            when observed.signup_value <= quartiles.q3 then 'Q3'
            else 'Q4'
        end as value_tier,
        case
            when observed.signup_value is null then null
            when observed.signup_value <= quartiles.q1 then quartiles.q1
            when observed.signup_value <= quartiles.q2 then quartiles.q2
            else quartiles.q3
        end as value_tier_bound,
        observed.last_observed_lifetime_month,
        observed.first_churn_lifetime_month
    from observed
    left join quartiles on observed.basis = quartiles.basis
),

-- each customer once per grouping it belongs to
grouped as (
    select
        basis,
        dimension,
        value,
        case when dimension = 'value_tier' then value_tier_bound end as value_tier_bound,
        last_observed_lifetime_month,
        first_churn_lifetime_month
    from labelled
    unpivot (value for dimension in ("all", cohort_month, channel, segment, signup_plan, value_tier))
),

final as (
    select
        basis,
        dimension,
        value,
        value_tier_bound,
        last_observed_lifetime_month::integer as last_observed_lifetime_month,
        first_churn_lifetime_month::integer as first_churn_lifetime_month,
        count(*)::bigint as customers
    from grouped
    group by all
)

select * from final
