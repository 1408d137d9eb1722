-- A table macro the two staging models share: it takes table and column names, and reads them
-- with query_table and columns(lambda ...).

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
