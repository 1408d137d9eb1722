-- What cohort_retention counts, summed per basis, signup cohort and interval of months: the
-- customers active from start_month until end_month (exclusive; null = still at as_of) and the
-- revenue in it. A few thousand rows instead of one per customer, spell or MRR interval.
-- subscription: a spell counts its customer; an MRR interval carries the MRR held.
-- orders: a month with orders is a one-month interval, active when it has a positive order,
-- with its net revenue; months before the customer's cohort are left out.
-- Every cohort: cohort_retention keeps the observed ones (lib/cohorts.py builds its grid of cells
-- from them), so that rule lives in one place.
with cohorts as (
    select
        basis,
        customer_id,
        cohort_month
    from staging.int_customers
),

intervals as (
    select
        'subscription' as basis,
        customer_id,
        spell_start_month as start_month,
        spell_end_month as end_month,
        1 as customers,
        0.0 as revenue
    from staging.int_customer_spells
    where basis = 'subscription'
    union all
    select
        'subscription' as basis,
        customer_id,
        segment_start_month as start_month,
        segment_end_month as end_month,
        0 as customers,
        mrr as revenue
    from staging.int_mrr_segments
    union all
    select
        'orders' as basis,
        customer_id,
        order_month as start_month,
        (order_month + interval 1 month)::date as end_month,
        is_active::integer as customers,
        revenue
    from staging.int_order_months
),

final as (
    select
        cohorts.basis,
        cohorts.cohort_month,
        intervals.start_month,
        intervals.end_month,
        sum(intervals.customers)::bigint as customers,
        -- exact and independent of summation order, as in int_monthly_movements
        sum(intervals.revenue::decimal(38, 6))::double as revenue
    from intervals
    inner join cohorts using (basis, customer_id)
    where intervals.basis = 'subscription' or intervals.start_month >= cohorts.cohort_month
    group by all
)

select * from final
