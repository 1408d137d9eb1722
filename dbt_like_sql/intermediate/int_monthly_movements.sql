-- Calendar-month movements per basis, for every month from the first signup to the last
-- complete month. Stocks (customers and MRR at the start and end of a month) are counted
-- directly from spells and MRR intervals; flows (new, reactivated, churned, MRR movements)
-- are counted per event in the month it takes effect, so the contract's identities check
-- one against the other.
with observation as (
    select * from staging.int_observation_window
),

spells as (
    select * from staging.int_customer_spells
),

bounds as (
    select
        basis,
        min(spell_start_month) as first_month
    from spells
    group by basis
),

months as (
    select
        bounds.basis,
        unnest(generate_series(bounds.first_month, observation.last_complete_month, interval 1 month))::date as month
    from bounds, observation
    where bounds.first_month <= observation.last_complete_month
),

-- a spell holds a customer at the end of month m when it starts by m and ends after m; the
-- customers at the start of a month are those at the end of the month before (none before the
-- first month, when no spell has started yet)
customers_end as (
    select
        months.basis,
        months.month,
        count(spells.customer_id) as customers_end
    from months
    left join spells
        on
            spells.basis = months.basis
            and spells.spell_start_month <= months.month
            and (spells.spell_end_month is null or spells.spell_end_month > months.month)
    group by months.basis, months.month
),

stocks as (
    select
        basis,
        month,
        coalesce(lag(customers_end) over (partition by basis order by month), 0) as customers_start,
        customers_end
    from customers_end
),

spell_starts as (
    select
        basis,
        spell_start_month as month,
        count(*) filter (where spell_number = 1) as new_customers,
        count(*) filter (where spell_number > 1) as reactivated
    from spells
    group by all
),

spell_ends as (
    select
        basis,
        spell_end_month as month,
        count(*) as churned,
        count(*) filter (where end_kind = 'voluntary') as voluntary_churned,
        count(*) filter (where end_kind = 'involuntary') as involuntary_churned,
        count(*) filter (where end_kind = 'downgrade') as downgrade_churned
    from spells
    where spell_end_at is not null
    group by all
),

-- subscription MRR held at month boundaries, from the MRR intervals: what started by then minus
-- what ended by then (a running sum over a few dozen months instead of a range join of every
-- interval with every month; exact decimals, so it equals summing the intervals held)
-- `not materialized` (here and for `events`): two cheap reads of the lifecycle cost less than
-- holding millions of rows in memory to share
mrr_segments as not materialized (
    select * from staging.int_mrr_segments
),

mrr_changes as (
    select
        month,
        sum(change) as change
    from (
        select
            segment_start_month as month,
            mrr::decimal(38, 6) as change
        from mrr_segments
        union all
        select
            segment_end_month as month,
            -(mrr::decimal(38, 6)) as change
        from mrr_segments
        where segment_end_month is not null
    ) as segment_boundaries
    group by month
),

mrr_end as (
    select
        months.month,
        coalesce(sum(changes.change), 0)::double as mrr_end
    from months
    left join mrr_changes as changes on changes.month <= months.month
    where months.basis = 'subscription'
    group by months.month
),

mrr_start as (
    select
        months.month,
        coalesce(sum(changes.change), 0)::double as mrr_start
    from months
    left join mrr_changes as changes on changes.month < months.month
    where months.basis = 'subscription'
    group by months.month
),

-- subscription events observed by as_of that move customers or MRR, or start a trial, in their month
events as not materialized (
    select
        events.*,
        events.event_month as month
    from staging.int_subscription_event_states as events, observation
    where
        events.occurred_at <= observation.as_of
        and (events.movement is not null or events.event_type = 'trial_started')
),

trial_customers as (
    select distinct customer_id from events
    where event_type = 'trial_started'
),

mrr_movements as (
    select
        month,
        sum((mrr_after)::decimal(38, 6)) filter (where movement = 'new')::double as new_mrr,
        sum((mrr_after - mrr_before)::decimal(38, 6)) filter (where movement = 'expansion')::double as expansion_mrr,
        sum((mrr_before - mrr_after)::decimal(38, 6)) filter (where movement = 'contraction')::double as contraction_mrr,
        sum((mrr_before)::decimal(38, 6)) filter (where movement in ('voluntary_churn', 'involuntary_churn'))::double
            as churned_mrr,
        sum((mrr_after)::decimal(38, 6)) filter (where movement = 'reactivation')::double as reactivation_mrr,
        count(*) filter (where event_type = 'trial_started') as trials_started,
        count(*) filter (where movement = 'new' and customer_id in (select customer_id from trial_customers)) as trials_converted
    from events
    group by month
),

-- orders: revenue of every loaded order in the month, split by whether it is the customer's signup month
order_months as (
    select * from staging.int_order_months
),

order_customers as (
    select
        customer_id,
        cohort_month
    from staging.int_customers
    where basis = 'orders'
),

order_revenue as (
    select
        order_months.order_month as month,
        sum(order_months.revenue::decimal(38, 6))::double as revenue,
        coalesce(
            sum(order_months.revenue::decimal(38, 6)) filter (where order_months.order_month = order_customers.cohort_month), 0
        )::double
            as new_customer_revenue
    from order_months
    left join order_customers using (customer_id)
    group by order_months.order_month
),

final as (
    select
        months.basis,
        months.month,
        stocks.customers_start,
        coalesce(spell_starts.new_customers, 0) as new_customers,
        coalesce(spell_starts.reactivated, 0) as reactivated,
        coalesce(spell_ends.churned, 0) as churned,
        case when months.basis = 'subscription' then coalesce(spell_ends.voluntary_churned, 0) end as voluntary_churned,
        case when months.basis = 'subscription' then coalesce(spell_ends.involuntary_churned, 0) end as involuntary_churned,
        case when months.basis = 'subscription' then coalesce(spell_ends.downgrade_churned, 0) end as downgrade_churned,
        stocks.customers_end,
        mrr_start.mrr_start,
        case when months.basis = 'subscription' then coalesce(mrr_movements.new_mrr, 0) end as new_mrr,
        case when months.basis = 'subscription' then coalesce(mrr_movements.expansion_mrr, 0) end as expansion_mrr,
        case when months.basis = 'subscription' then coalesce(mrr_movements.contraction_mrr, 0) end as contraction_mrr,
        case when months.basis = 'subscription' then coalesce(mrr_movements.churned_mrr, 0) end as churned_mrr,
        case when months.basis = 'subscription' then coalesce(mrr_movements.reactivation_mrr, 0) end as reactivation_mrr,
        mrr_end.mrr_end,
        case when months.basis = 'subscription' then coalesce(mrr_movements.trials_started, 0) end as trials_started,
        case when months.basis = 'subscription' then coalesce(mrr_movements.trials_converted, 0) end as trials_converted,
        case when months.basis = 'orders' then coalesce(order_revenue.revenue, 0) end as revenue,
        case when months.basis = 'orders' then coalesce(order_revenue.new_customer_revenue, 0) end as new_customer_revenue
    from months
    inner join stocks using (basis, month)
    left join spell_starts using (basis, month)
    left join spell_ends using (basis, month)
    left join mrr_start on months.basis = 'subscription' and mrr_start.month = months.month
    left join mrr_end on months.basis = 'subscription' and mrr_end.month = months.month
    left join mrr_movements on months.basis = 'subscription' and mrr_movements.month = months.month
    left join order_revenue on months.basis = 'orders' and order_revenue.month = months.month
)

select * from final
order by basis, month
