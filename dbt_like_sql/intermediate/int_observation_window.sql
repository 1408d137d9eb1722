-- One row: where observation ends (as_of) and the last complete month in the reporting zone.
with latest as (
    select max(ordered_at) as latest_at from staging.int_orders
    union all
    select max(occurred_at) from staging.int_subscription_event_states
),

window_end as (
    select coalesce($as_of::timestamptz, (select max(latest_at) from latest)) as as_of
),

final as (
    select
        as_of,
        $timezone::varchar as reporting_timezone,
        month_of(as_of, $timezone) as as_of_month,
        (month_of(as_of, $timezone) - interval 1 month)::date as last_complete_month
    from window_end
)

select * from final
