-- Every raw fx_rates row, typed, with the reason it cannot be loaded (null when it can).
with source as (
    select * from raw.fx_rates
),

-- cast the text columns; keep the raw values for the quarantine
typed as (
    select
        upper(trim(currency)) as currency,
        parse_number(rate_to_reporting) as rate_to_reporting,
        clean_text(month) as month_text,
        parse_month(clean_text(month)) as rate_month,
        to_json(struct_pack(currency, rate_to_reporting, month)) as raw_values,
        source_file,
        source_row
    from source
),

-- row-level problems, first one wins
checked as (
    select
        *,
        case
            when currency is null or currency = '' then 'missing currency'
            when not regexp_matches(currency, '^[A-Z]{3}$') then 'invalid currency code'
            when rate_to_reporting is null then 'unparseable rate_to_reporting'
            when rate_to_reporting <= 0 then 'rate_to_reporting must be positive'
            when month_text is not null and rate_month is null then 'unparseable month'
        end as row_error
    from typed
),

-- a second rate for the same currency and month is a duplicate
final as (
    select
        currency,
        rate_to_reporting,
        date_trunc('month', rate_month)::date as rate_month,
        case
            when row_error is not null then row_error
            when row_number() over (
                partition by row_error is null, currency, date_trunc('month', rate_month)
                order by rate_to_reporting, source_file, source_row
            ) > 1 then 'duplicate currency and month'
        end as quarantine_reason,
        raw_values,
        source_file,
        source_row
    from checked
)

select * from final
