-- "Satisfied" churn counted per basis and grouping (`dimension`: all, cohort as text YYYY-MM-DD,
-- or channel with null as 'unknown'): churns, how many of them are observed 30/60/90 days on and
-- how many of those came back within that time, returns ever, and the median and mean days to
-- return (computed here: they need every churn). A churn counts in an N-day window only when N
-- days after it are observed. churn_reactivation adds the shares.
with returns as (
    select * from staging.int_churn_returns
),

customers as (
    select
        basis,
        customer_id,
        cohort_month,
        channel
    from staging.int_customers
),

churns as (
    select
        returns.basis,
        'all' as "all",
        customers.cohort_month::varchar as cohort,
        coalesce(customers.channel, 'unknown') as channel,
        returns.days_to_return,
        returns.days_observed
    from returns
    inner join customers
        on
            returns.basis = customers.basis
            and returns.customer_id = customers.customer_id
),

-- each churn once per grouping it belongs to
labelled as (
    select
        basis,
        dimension,
        value,
        days_to_return,
        days_observed
    from churns
    unpivot (value for dimension in ("all", cohort, channel))
),

final as (
    select
        basis,
        dimension,
        value,
        count(*)::bigint as churns,
        count(*) filter (where days_observed >= 30)::bigint as churns_observed_30d,
        count(*) filter (where days_observed >= 30 and days_to_return <= 30)::bigint as returned_30d,
        count(*) filter (where days_observed >= 60)::bigint as churns_observed_60d,
        count(*) filter (where days_observed >= 60 and days_to_return <= 60)::bigint as returned_60d,
        count(*) filter (where days_observed >= 90)::bigint as churns_observed_90d,
        count(*) filter (where days_observed >= 90 and days_to_return <= 90)::bigint as returned_90d,
        count(days_to_return)::bigint as returned_ever,
        median(days_to_return) as median_days_to_return,
        -- exact and independent of summation order, as in int_cohort_activity
        avg(days_to_return::decimal(38, 9))::double as mean_days_to_return
    from labelled
    group by basis, dimension, value
)

select * from final
