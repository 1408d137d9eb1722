-- Loaded orders, amounts in the reporting currency; only amount > 0 counts as activity.
-- materialized: view
with orders as (
    select * from staging.stg_orders
    where quarantine_reason is null
),

final as (
    select
        order_id,
        customer_id,
        ordered_at,
        amount,
        amount_original,
        currency,
        channel,
        channel_missing,
        amount > 0 as is_activity,
        source_file,
        source_row
    from orders
)

select * from final
