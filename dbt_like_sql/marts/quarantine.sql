-- Every raw row that was not loaded: where it came from, its raw values and why.
with csv_rejects as (
    select * from raw.csv_rejects
),

orders as (
    select * from staging.stg_orders where quarantine_reason is not null
),

subscription_rows as (
    select * from staging.stg_subscription_events where quarantine_reason is not null
),

-- loaded rows do not carry their raw text; a lifecycle contradiction gets it back from raw
raw_subscription_events as (
    select distinct on (source_file, source_row, nullif(trim(event_id), ''))
        source_file, source_row, nullif(trim(event_id), '') as event_id,
        to_json(struct_pack(
            event_id, customer_id, occurred_at, event_type, plan, price, billing_period, currency, channel, segment
        )) as raw_values
    from raw.subscription_events
),

subscription_lifecycle as (
    select lifecycle.source_file, lifecycle.source_row, lifecycle.lifecycle_error, raw_rows.raw_values
    from staging.int_subscription_events_lifecycle as lifecycle
    left join raw_subscription_events as raw_rows using (source_file, source_row, event_id)
    where lifecycle.lifecycle_error is not null
),

fx_rates as (
    select * from staging.stg_fx_rates where quarantine_reason is not null
),

unioned as (
    select 'orders' as source, source_file, source_row,
        raw_values::varchar as raw_values, quarantine_reason as reason
    from orders
    union all
    select 'subscription_events', source_file, source_row, raw_values::varchar, quarantine_reason
    from subscription_rows
    union all
    select 'subscription_events', source_file, source_row, raw_values::varchar, lifecycle_error
    from subscription_lifecycle
    union all
    select 'fx_rates', source_file, source_row, raw_values::varchar, quarantine_reason
    from fx_rates
    union all
    select source, source_file, source_row, to_json(struct_pack(raw_line))::varchar,
        'unreadable CSV row: ' || lower(error_type)
    from csv_rejects
),

final as (
    select
        source,
        source_file,
        source_row,
        reason,
        raw_values
    from unioned
)

select * from final order by source, source_file, source_row, reason
