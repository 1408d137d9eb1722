-- Every raw order row, typed (UTC instants, reporting-currency amounts), with the reason
-- it cannot be loaded (null when it can) and, for such a row, its raw values. raw.orders is a
-- view of the delivery files: this model reads each file once and keeps no other raw text.
-- materialized: incremental
-- incremental_source: raw.orders
-- unique_key: source_file, source_row

-- An append reads the months from the first changed one on, and the top-level files. Which copy
-- of a repeated id is loaded depends on all of them: the valid copies in earlier months join the
-- duplicate window (their rows keep their state: they come first by time).
{% if is_incremental() %}
with delivered as materialized (
    select * from raw.orders
    where list_contains($append_months, coalesce(delivery_month, ''))
),

earlier_copies as materialized (
    select order_id, customer_id, ordered_at, amount_original, currency, channel, source_file, source_row
    from {{ this }}
    where
        not list_contains($append_months, coalesce(delivery_month, ''))
        and coalesce(quarantine_reason, 'duplicate order_id') = 'duplicate order_id'
        and order_id in (select clean_text(delivered.order_id) from delivered)
),

delivered_ids as (
    select clean_text(order_id) as order_id from delivered
    union all
    select order_id from earlier_copies
),
{% else %}
with delivered as not materialized (
    select * from raw.orders
),

delivered_ids as (
    select clean_text(order_id) as order_id from delivered
),
{% endif %}

-- ids that occur more than once, as hashes: only their rows need the duplicate window in
-- `final` (a hash collision only sends more rows through it; the window compares the ids)
repeated_ids as (
    select hash(order_id) as id_hash
    from delivered_ids
    group by id_hash
    having count(*) > 1
),

-- `not materialized` here and below: `final` reads this chain twice, each time for its own rows
source as not materialized (
    select
        *,
        hash(clean_text(order_id)) in (select id_hash from repeated_ids) as is_repeated_id
    from delivered
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
        struct_pack(
            order_id := source.order_id, customer_id := source.customer_id, ordered_at := source.ordered_at,
            amount := source.amount, currency := source.currency, channel := source.channel
        ) as raw_row,
        source_file,
        source_row,
        delivery_month,
        is_repeated_id
    from source
),

-- the rate for the order's month wins over a rate with no month
with_rate as not materialized (
    select
        typed.*,
        case
            when typed.currency = $reporting_currency then 1.0
            else coalesce(fx_month.rate_to_reporting, fx_any.rate_to_reporting)
        end as fx_rate
    from typed
    left join fx_rates as fx_month
        on
            fx_month.currency = typed.currency
            and fx_month.rate_month = month_of(typed.ordered_at, $timezone)
    left join fx_rates as fx_any
        on
            fx_any.currency = typed.currency
            and fx_any.rate_month is null
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
            when delivery_month is not null and strftime(month_of(ordered_at, $timezone), '%Y-%m') <> delivery_month
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
        raw_row,
        source_file,
        source_row,
        delivery_month,
        is_repeated_id
    from checked
),

-- the rows of repeated ids, with (in an append) the valid copies of earlier months
repeated_rows as (
    select
        * exclude (is_repeated_id),
        false as is_earlier_copy
    from valued
    where is_repeated_id
    {% if is_incremental() %}
    union all by name
    select
        *,
        true as is_earlier_copy
    from earlier_copies
    {% else %}
    {% endif %}
),

-- a repeated order_id is a duplicate delivery: the first by content is loaded; the window
-- (a sort of every column) runs over the rows of repeated ids only
numbered as (
    select
        *,
        coalesce(row_error, case
            when row_number() over (
                partition by row_error is null, order_id
                order by ordered_at, amount_original, customer_id, currency, channel, source_file, source_row
            ) > 1 then 'duplicate order_id'
        end) as quarantine_reason
    from repeated_rows
),

final as (
    select
        * exclude (row_error, raw_row, source_file, source_row, delivery_month, is_repeated_id),
        row_error as quarantine_reason,
        if(row_error is null, null, to_json(raw_row)::varchar) as raw_values,
        source_file,
        source_row,
        delivery_month
    from valued
    where not is_repeated_id
    union all
    select
        * exclude (row_error, raw_row, source_file, source_row, delivery_month, is_earlier_copy, quarantine_reason),
        quarantine_reason,
        if(quarantine_reason is null, null, to_json(raw_row)::varchar) as raw_values,
        source_file,
        source_row,
        delivery_month
    from numbered
    where not is_earlier_copy
)

select * from final
