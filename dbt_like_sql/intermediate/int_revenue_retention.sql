-- Net and gross revenue retention over 12 months, per complete calendar month m (subscription
-- basis): the customers who held MRR at the end of month m - 12, their MRR then, their MRR at
-- the end of m (0 once gone), and that capped at their MRR then (no expansion counted). Only
-- months whose m - 12 is in the history; churn_by_month divides.
with months as (
    select month from staging.int_monthly_movements
    where basis = 'subscription'
),

history as (
    select min(month) as first_month from months
),

mrr_segments as (
    select * from staging.int_mrr_segments
),

-- each customer's MRR at the end of every month (the rule int_monthly_movements counts mrr_end by)
held as (
    select
        months.month,
        mrr_segments.customer_id,
        sum(mrr_segments.mrr::decimal(38, 6)) as mrr
    from months
    inner join mrr_segments
        on
            mrr_segments.segment_start_month <= months.month
            and (mrr_segments.segment_end_month is null or mrr_segments.segment_end_month > months.month)
    group by months.month, mrr_segments.customer_id
),

pairs as (
    select
        months.month,
        then_held.customer_id,
        then_held.mrr as mrr_then,
        coalesce(now_held.mrr, 0) as mrr_now
    from months
    inner join held as then_held
        on then_held.month = (months.month - interval 12 month)::date
    left join held as now_held
        on
            now_held.month = months.month
            and now_held.customer_id = then_held.customer_id
    where then_held.mrr > 0
),

final as (
    select
        months.month,
        count(pairs.customer_id)::bigint as customers_12m_before,
        coalesce(sum(pairs.mrr_then), 0)::double as mrr_12m_before,
        coalesce(sum(pairs.mrr_now), 0)::double as mrr_now_of_those,
        coalesce(sum(least(pairs.mrr_now, pairs.mrr_then)), 0)::double as mrr_now_of_those_capped
    from months
    cross join history
    left join pairs on months.month = pairs.month
    where (months.month - interval 12 month)::date >= history.first_month
    group by months.month
)

select * from final
