-- Every raw row that was not loaded: where it came from, its raw values and why.
with csv_rejects as (
    select * from raw.csv_rejects
),

-- staging keeps the raw values of the rows it quarantines
orders as (
    select
        source_file,
        source_row,
        quarantine_reason,
        raw_values
    from staging.stg_orders
    where quarantine_reason is not null
),

-- a row the lifecycle quarantines was valid when staged, so its raw values are read again from
-- its delivery file, by (source_file, source_row), which identifies a raw row
lifecycle_errors as materialized (
    select
        staged.source_file,
        staged.source_row,
        lifecycle.lifecycle_error
    from staging.int_subscription_events_lifecycle as lifecycle
    inner join staging.stg_subscription_events as staged
        on
            staged.event_id = lifecycle.event_id
            and staged.quarantine_reason is null
    where lifecycle.lifecycle_error is not null
),

-- a second read of the event files, skipped when the lifecycle quarantined nothing
raw_rows as (
    select * from raw.subscription_events
    where exists (select 1 from lifecycle_errors)
),

subscription_events as (
    select
        source_file,
        source_row,
        quarantine_reason,
        raw_values
    from staging.stg_subscription_events
    where quarantine_reason is not null
    union all
    select
        quarantined.source_file,
        quarantined.source_row,
        quarantined.lifecycle_error,
        to_json(struct_pack(
            event_id := raw_rows.event_id, customer_id := raw_rows.customer_id, occurred_at := raw_rows.occurred_at,
            event_type := raw_rows.event_type, plan := raw_rows.plan, price := raw_rows.price,
            billing_period := raw_rows.billing_period, currency := raw_rows.currency, channel := raw_rows.channel,
            segment := raw_rows.segment
        )) as raw_values
    from lifecycle_errors as quarantined
    left join raw_rows
        on
            raw_rows.source_file = quarantined.source_file
            and raw_rows.source_row = quarantined.source_row
),

fx_rates as (
    select * from staging.stg_fx_rates
    where quarantine_reason is not null
),

unioned as (
    select
        'orders' as source,
        source_file,
        source_row,
        raw_values::varchar as raw_values,
        quarantine_reason as reason
    from orders
    union all
    select
        'subscription_events' as source,
        source_file,
        source_row,
        raw_values::varchar as raw_values,
        quarantine_reason as reason
    from subscription_events
    union all
    select
        'fx_rates' as source,
        source_file,
        source_row,
        raw_values::varchar as raw_values,
        quarantine_reason as reason
    from fx_rates
    union all
    select
        source,
        source_file,
        source_row,
        to_json(struct_pack(raw_line))::varchar as raw_values,
        'unreadable CSV row: ' || lower(error_type) as reason
    from csv_rejects
),

observation as (
    select * from staging.int_observation_window
),

final as (
    select
        unioned.source,
        unioned.source_file,
        unioned.source_row,
        unioned.reason,
        unioned.raw_values,
        observation.as_of
    from unioned
    left join observation on true
)

select * from final
order by source, source_file, source_row, reason
