-- Spark bodies of the time macros in ../time.sql (Spark SQL). The session time zone is UTC, so a
-- TIMESTAMP is an instant and a naive text time reads as its UTC wall-clock time.

-- Spark's to_utc_timestamp follows java.time: a repeated wall-clock time is its first
-- occurrence, a skipped one moves forward by the gap, which is the rule local_instant states.
create or replace temp macro local_instant(local_time, tz) as
to_utc_timestamp(local_time, tz);

create or replace temp macro parse_instant(value, source_tz) as
case
    when regexp_like(trim(value), '\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?\\s*([Zz]|[+-]\\d{2}(:?\\d{2})?)$')
        then try_cast(trim(value) as timestamp)
    when source_tz = 'UTC' then try_cast(trim(value) as timestamp)
    else local_instant(try_cast(trim(value) as timestamp), source_tz)
end;

create or replace temp macro month_of(instant, reporting_tz) as
trunc(to_date(from_utc_timestamp(instant, reporting_tz)), 'MM');

create or replace temp macro seconds_between(a, b) as
unix_seconds(b) - unix_seconds(a);

-- abs() of NaN is not below infinity (Spark orders NaN above every number)
create or replace temp macro parse_number(value) as
case
    when abs(try_cast(trim(value) as double)) < cast('Infinity' as double) then try_cast(trim(value) as double)
end;

create or replace temp macro parse_month(value) as
coalesce(to_date(try_to_timestamp(value, 'yyyy-M-d')), to_date(try_to_timestamp(value, 'yyyy-M')));
