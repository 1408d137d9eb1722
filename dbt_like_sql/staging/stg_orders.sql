-- Every raw order row, typed (UTC instants, reporting-currency amounts), with the reason
-- it cannot be loaded (null when it can). The raw text stays in raw.orders.
-- materialized: incremental
-- incremental_source: raw.orders
-- unique_key: source_file, source_row

-- The table macros of macros/deliveries.sql read CTEs by name, which sqlfluff does not follow.
-- noqa: disable=ST03

-- A new delivery month is typed alone, with every other copy of an id it delivers: which copy
-- of a repeated id is loaded depends on all of them, and nothing else crosses rows.
{% if is_incremental() %}
with delivered as materialized (
    select * from delivered_rows('raw.orders', '{{ this }}', 'order_id', $append_months)
),
{% else %}
with delivered as not materialized (
    select * from raw.orders
),
{% endif %}

-- `not materialized` here and below: `final` reads this chain twice, each time for its own rows
source as not materialized (
    select * from flag_repeated_ids('delivered', 'order_id')
),

fx_rates as (
    select * from staging.stg_fx_rates
    where quarantine_reason is null
),

-- cast the text columns; naive timestamps are in the source time zone
typed as not materialized (
    select
        clean_text(order_id) as order_id,
        clean_text(customer_id) as customer_id,
        parse_instant(ordered_at, $source_timezone) as ordered_at,
        parse_number(amount) as amount_original,
        upper(coalesce(clean_text(currency), $reporting_currency)) as currency,
        coalesce(lower(clean_text(channel)), 'unknown') as channel,
        clean_text(channel) is null as channel_missing,
        clean_text(ordered_at) is null as missing_ordered_at,
        clean_text(amount) is null as missing_amount,
        source_file,
        source_row,
        delivery_month,
        is_repeated_id
    from source
),

with_rate as not materialized (
    select * from with_fx_rate('typed', 'ordered_at', 'fx_rates', $reporting_currency, $timezone)
),

-- row-level problems, first one wins
checked as not materialized (
    select
        *,
        case
            when order_id is null then 'missing order_id'
            when customer_id is null then 'missing customer_id'
            when missing_ordered_at then 'missing ordered_at'
            when missing_amount then 'missing amount'
            when ordered_at is null then 'unparseable ordered_at'
            -- a file in a YYYY-MM folder holds that month only: [month start, next month start) in $timezone
            when delivery_month is not null and strftime(reporting_month, '%Y-%m') <> delivery_month
                then 'ordered_at outside its delivery month'
            when amount_original is null then 'unparseable amount'
            when not regexp_matches(currency, '^[A-Z]{3}$') then 'invalid currency code'
            when fx_rate is null then 'no fx rate for currency ' || currency
        end as row_error
    from with_rate
),

valued as not materialized (
    select
        order_id,
        customer_id,
        ordered_at,
        amount_original * fx_rate as amount,
        amount_original,
        currency,
        fx_rate,
        channel,
        channel_missing,
        row_error,
        -- the content order that picks the loaded copy of a repeated id
        row(ordered_at, amount_original, customer_id, currency, channel, source_file, source_row) as copy_order,
        source_file,
        source_row,
        delivery_month,
        is_repeated_id
    from checked
),

-- a repeated order_id is a duplicate delivery: the first by content is loaded
final as (
    select * from with_quarantine_reason('valued', 'order_id')
)

select * from final
