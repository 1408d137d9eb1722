-- One row per customer and calendar month with orders, observed up to as_of: net revenue
-- (refunds included) and whether any order counts as activity (amount > 0).
with observation as (
    select * from staging.int_observation_window
),

orders as (
    select orders.*
    from staging.int_orders as orders, observation
    where orders.ordered_at <= observation.as_of
),

final as (
    select
        customer_id,
        month_of(ordered_at, $timezone) as order_month,
        sum(amount::decimal(38, 6))::double as revenue,
        bool_or(is_activity) as is_active,
        count(*) filter (where is_activity) as orders
    from orders
    group by customer_id, order_month
)

select * from final
