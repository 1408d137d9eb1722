-- Table macros the two staging models share: they take table names (a model's CTE name works
-- too) and column names, and read them with query_table and columns(lambda ...).

-- An append's rows: the rows of the delivery months in `months`, with every other copy of an id
-- they deliver (which copy of a repeated id is loaded depends on all of them). The other copies
-- are found by the ids the staged table already cleaned.
create or replace temp macro delivered_rows(raw_table, staged_table, id_column, months) as table
    with delivered_ids as (
        select distinct clean_text(columns(lambda c: c = id_column)) as id
        from query_table(raw_table)
        where list_contains(months, coalesce(delivery_month, ''))
    ),

    other_copies as (
        select
            source_file,
            source_row
        from query_table(staged_table)
        where
            columns(lambda c: c = id_column) in (select delivered_ids.id from delivered_ids)
            and not list_contains(months, coalesce(delivery_month, ''))
    )

    select * from query_table(raw_table)
    where list_contains(months, coalesce(delivery_month, ''))
    union all
    select * from query_table(raw_table)
    semi join other_copies using (source_file, source_row);

-- The rows, with `is_repeated_id`: whether their id occurs more than once. Ids are compared as
-- hashes, so only rows flagged here need the duplicate window (a collision only flags more rows).
create or replace temp macro flag_repeated_ids(rows, id_column) as table
    with repeated_ids as (
        select hash(clean_text(columns(lambda c: c = id_column))) as id_hash
        from query_table(rows)
        group by id_hash
        having count(*) > 1
    )

    select
        *,
        hash(clean_text(columns(lambda c: c = id_column))) in (select repeated_ids.id_hash from repeated_ids) as is_repeated_id
    from query_table(rows);

-- The staged rows with their `quarantine_reason`: the row's own error, else 'duplicate <id>'
-- for every copy of a repeated id after the first by `copy_order` among those without an error.
-- The window runs over the rows of repeated ids only.
create or replace temp macro with_quarantine_reason(rows, id_column) as table
    select
        * exclude (row_error, copy_order, source_file, source_row, delivery_month, is_repeated_id),
        row_error as quarantine_reason,
        source_file,
        source_row,
        delivery_month
    from query_table(rows)
    where not is_repeated_id
    union all
    select
        * exclude (row_error, copy_order, source_file, source_row, delivery_month, is_repeated_id),
        case
            when row_error is not null then row_error
            when row_number() over (
                partition by row_error is null, columns(lambda c: c = id_column) order by copy_order
            ) > 1 then 'duplicate ' || id_column
        end as quarantine_reason,
        source_file,
        source_row,
        delivery_month
    from query_table(rows)
    where is_repeated_id;

-- The rows with `reporting_month` (the month of their `instant_column` in the reporting time zone)
-- and `fx_rate`, the rate from their `currency` to the reporting currency: 1 for the reporting
-- currency, else the rate for that month, else the currency's rate with no month (null when it
-- has neither).
create or replace temp macro with_fx_rate(rows, instant_column, fx_rates, reporting_currency, reporting_tz) as table
    with dated as (
        select
            *,
            month_of(columns(lambda c: c = instant_column), reporting_tz) as reporting_month
        from query_table(rows)
    )

    select
        dated.*,
        case
            when dated.currency = reporting_currency then 1.0
            else coalesce(fx_month.rate_to_reporting, fx_any.rate_to_reporting)
        end as fx_rate
    from dated
    left join query_table(fx_rates) as fx_month
        on
            dated.currency = fx_month.currency
            and dated.reporting_month = fx_month.rate_month
    left join query_table(fx_rates) as fx_any
        on
            dated.currency = fx_any.currency
            and fx_any.rate_month is null;
