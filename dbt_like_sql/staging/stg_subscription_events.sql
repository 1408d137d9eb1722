-- Every raw subscription event, typed (UTC instants, MRR in the reporting currency), with
-- the row-level reason it cannot be loaded (null when it can) and, for such a row, its raw
-- values. Lifecycle order is checked in int_subscription_events_lifecycle. raw.subscription_events
-- is a view of the delivery files: this model reads each file once and keeps no other raw text.
-- materialized: incremental
-- incremental_source: raw.subscription_events
-- unique_key: source_file, source_row

-- An append reads the months from the first changed one on, and the top-level files. Which copy
-- of a repeated id is loaded depends on all of them: the valid copies in earlier months join the
-- duplicate window (their rows keep their state: they come first by time).
{% if is_incremental() %}
with delivered as materialized (
    select * from raw.subscription_events
    where list_contains($append_months, coalesce(delivery_month, ''))
),

earlier_copies as materialized (
    select
        event_id, customer_id, occurred_at, event_type, plan, price, billing_period, currency, channel, segment,
        source_file, source_row
    from {{ this }}
    where
        not list_contains($append_months, coalesce(delivery_month, ''))
        and coalesce(quarantine_reason, 'duplicate event_id') = 'duplicate event_id'
        and event_id in (select clean_text(delivered.event_id) from delivered)
),

delivered_ids as (
    select clean_text(event_id) as event_id from delivered
    union all
    select event_id from earlier_copies
),
{% else %}
with delivered as not materialized (
    select * from raw.subscription_events
),

delivered_ids as (
    select clean_text(event_id) as event_id from delivered
),
{% endif %}

-- ids that occur more than once, as hashes: only their rows need the duplicate window in
-- `final` (a hash collision only sends more rows through it; the window compares the ids)
repeated_ids as (
    select hash(event_id) as id_hash
    from delivered_ids
    group by id_hash
    having count(*) > 1
),

-- `not materialized` here and below: `final` reads this chain twice, each time for its own rows
source as not materialized (
    select
        *,
        hash(clean_text(event_id)) in (select id_hash from repeated_ids) as is_repeated_id
    from delivered
),

fx_rates as (
    select * from staging.stg_fx_rates
    where quarantine_reason is null
),

-- cast the text columns; naive timestamps are in the source time zone
typed as not materialized (
    select
        clean_text(event_id) as event_id,
        clean_text(customer_id) as customer_id,
        parse_instant(occurred_at, $source_timezone) as occurred_at,
        lower(clean_text(event_type)) as event_type,
        clean_text(plan) as plan,
        parse_number(price) as price,
        coalesce(lower(clean_text(billing_period)), 'month') as billing_period,
        upper(coalesce(clean_text(currency), $reporting_currency)) as currency,
        coalesce(lower(clean_text(channel)), 'unknown') as channel,
        coalesce(lower(clean_text(segment)), 'unknown') as segment,
        clean_text(occurred_at) is null as missing_occurred_at,
        clean_text(price) is not null as has_price,
        struct_pack(
            event_id := source.event_id, customer_id := source.customer_id, occurred_at := source.occurred_at,
            event_type := source.event_type, plan := source.plan, price := source.price,
            billing_period := source.billing_period, currency := source.currency, channel := source.channel,
            segment := source.segment
        ) as raw_row,
        source_file,
        source_row,
        delivery_month,
        is_repeated_id
    from source
),

-- the rate for the event's month wins over a rate with no month
with_rate as not materialized (
    select
        typed.*,
        typed.event_type in ('subscribed', 'reactivated', 'plan_changed', 'price_changed') as sets_plan,
        case
            when typed.currency = $reporting_currency then 1.0
            else coalesce(fx_month.rate_to_reporting, fx_any.rate_to_reporting)
        end as fx_rate
    from typed
    left join fx_rates as fx_month
        on
            fx_month.currency = typed.currency
            and fx_month.rate_month = month_of(typed.occurred_at, $timezone)
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
            when event_id is null then 'missing event_id'
            when customer_id is null then 'missing customer_id'
            when missing_occurred_at then 'missing occurred_at'
            when event_type is null then 'missing event_type'
            when occurred_at is null then 'unparseable occurred_at'
            -- a file in a YYYY-MM folder holds that month only: [month start, next month start) in $timezone
            when delivery_month is not null and strftime(month_of(occurred_at, $timezone), '%Y-%m') <> delivery_month
                then 'occurred_at outside its delivery month'
            -- not `not in (...)`: DuckDB turns a long IN list into a join, which costs more here
            when list_position(lifecycle_event_types(), event_type) is null then 'unknown event_type'
            when has_price and price is null then 'unparseable price'
            when price < 0 then 'negative price'
            when sets_plan and plan is null then 'missing plan for ' || event_type
            when sets_plan and not has_price then 'missing price for ' || event_type
            when billing_period not in ('month', 'year') then 'unknown billing_period'
            when sets_plan and not regexp_matches(currency, '^[A-Z]{3}$') then 'invalid currency code'
            when sets_plan and fx_rate is null then 'no fx rate for currency ' || currency
        end as row_error
    from with_rate
),

valued as not materialized (
    select
        event_id,
        customer_id,
        occurred_at,
        event_type,
        plan,
        price,
        billing_period,
        currency,
        fx_rate,
        case
            when sets_plan then price * fx_rate / case billing_period when 'year' then 12 else 1 end
        end as mrr,
        channel,
        segment,
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

-- a repeated event_id is a duplicate delivery: the first by content is loaded; the window
-- (a sort of every column) runs over the rows of repeated ids only
numbered as (
    select
        *,
        coalesce(row_error, case
            when row_number() over (
                partition by row_error is null, event_id
                order by
                    occurred_at, event_type, customer_id, plan, price, billing_period, currency,
                    channel, segment, source_file, source_row
            ) > 1 then 'duplicate event_id'
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
