-- The offset from UTC in force in a zone at an instant (an interval).
create or replace temp macro utc_offset(instant, tz) as
timezone(tz, instant) - timezone('UTC', instant);

create or replace temp macro earlier_occurrence(later, offset_change, local_time, tz) as
case
    when offset_change > interval 0 seconds and timezone(tz, later - offset_change) = local_time
        then later - offset_change
    else later
end;

-- A wall-clock time in a zone as an instant, by RFC 5545's rule (Python's fold=0 and
-- java.time's default follow it too): a time the clocks pass twice (they go back) is its first
-- occurrence; a time they skip (they go forward) is read with the offset before the gap, so it
-- moves forward by the gap. ICU's `timezone` already does the second but takes the later
-- occurrence of a repeated time; the earlier one is that instant less the offset change, when
-- it shows the same wall-clock time.
create or replace temp macro local_instant(local_time, tz) as
earlier_occurrence(
    timezone(tz, local_time),
    utc_offset(timezone(tz, local_time) - interval 1 day, tz) - utc_offset(timezone(tz, local_time), tz),
    local_time,
    tz
);

-- An ISO-8601 text instant as timestamptz: with `Z` or an offset it is taken as written,
-- a naive value is a wall-clock time in the given source time zone (local_instant); anything
-- else is null.
create or replace temp macro parse_instant(value, source_tz) as
case
    when regexp_matches(trim(value), '\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)$')
        then try_cast(trim(value) as timestamptz)
    when source_tz = 'UTC' then timezone('UTC', try_cast(trim(value) as timestamp))
    else local_instant(try_cast(trim(value) as timestamp), source_tz)
end;

-- The calendar month (first day, as a date) of an instant, in the reporting time zone. In UTC,
-- plain arithmetic on the instant's microseconds, cheaper than ICU's conversion (the
-- zone is a bound constant, so DuckDB keeps only one branch).
create or replace temp macro month_of(instant, reporting_tz) as
case
    when reporting_tz = 'UTC' then date_trunc('month', make_timestamp(epoch_us(instant::timestamptz)))::date
    else date_trunc('month', timezone(reporting_tz, instant))::date
end;

-- Seconds from instant `a` to instant `b`, counted as date_diff counts them (second boundaries
-- crossed), on the instants' UTC microseconds rather than with ICU's timestamptz version.
create or replace temp macro seconds_between(a, b) as
date_diff('second', make_timestamp(epoch_us(a::timestamptz)), make_timestamp(epoch_us(b::timestamptz)));

-- Whole calendar months from month `a` to month `b` (both first-of-month dates).
create or replace temp macro months_between(a, b) as
(year(b) - year(a)) * 12 + (month(b) - month(a));

-- A text date (YYYY-MM-DD) or month (YYYY-MM) as a date, the first of the month for a month.
create or replace temp macro parse_month(value) as
coalesce(try_cast(value as date), try_strptime(value, '%Y-%m')::date);

-- A text amount as a finite double, else null.
create or replace temp macro parse_number(value) as
case when isfinite(try_cast(trim(value) as double)) then try_cast(trim(value) as double) end;
