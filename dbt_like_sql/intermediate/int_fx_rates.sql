-- Loaded fx rates (one per currency and month; a rate with no month applies to every month).
with rates as (
    select * from staging.stg_fx_rates
    where quarantine_reason is null
)

select
    currency,
    rate_month,
    rate_to_reporting,
    source_file,
    source_row
from rates
