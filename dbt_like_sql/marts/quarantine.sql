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
subscription_lifecycle as (
    select
        lifecycle.source_file,
        lifecycle.source_row,
        lifecycle.lifecycle_error,
        to_json(struct_pack(
            event_id := raw_rows.event_id, customer_id := raw_rows.customer_id, occurred_at := raw_rows.occurred_at,
            event_type := raw_rows.event_type, plan := raw_rows.plan, price := raw_rows.price,
            billing_period := raw_rows.billing_period, currency := raw_rows.currency, channel := raw_rows.channel,
            segment := raw_rows.segment
        )) as raw_values
    from staging.int_subscription_events_lifecycle as lifecycle
    left join raw.subscription_events as raw_rows
        on raw_rows.source_file = lifecycle.source_file
        and raw_rows.source_row = lifecycle.source_row
        and nullif(trim(raw_rows.event_id), '') = lifecycle.event_id
    where lifecycle.lifecycle_error is not null
    qualify row_number() over (partition by lifecycle.source_file, lifecycle.source_row, lifecycle.event_id) = 1
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
