-- An ISO-8601 text instant as timestamptz: with `Z` or an offset it is taken as written,
-- a naive value is read in the given source time zone; anything else is null.
create or replace temp macro parse_instant(value, source_tz) as
    case
        when regexp_matches(trim(value), '\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)$')
            then try_cast(trim(value) as timestamptz)
        else timezone(source_tz, try_cast(trim(value) as timestamp))
    end;

-- The calendar month (first day, as a date) of an instant, in the reporting time zone. In UTC,
-- plain arithmetic on the instant's microseconds: a fifth of the cost of ICU's conversion (the
-- zone is a bound constant, so DuckDB keeps only one branch).
create or replace temp macro month_of(instant, reporting_tz) as
    case
        when reporting_tz = 'UTC' then date_trunc('month', make_timestamp(epoch_us(instant::timestamptz)))::date
        else date_trunc('month', timezone(reporting_tz, instant))::date
    end;

-- Seconds from instant `a` to instant `b`, counted as date_diff counts them (second boundaries
-- crossed), on the instants' UTC microseconds: 30x cheaper than ICU's timestamptz version.
create or replace temp macro seconds_between(a, b) as
    date_diff('second', make_timestamp(epoch_us(a::timestamptz)), make_timestamp(epoch_us(b::timestamptz)));

-- Whole calendar months from month `a` to month `b` (both first-of-month dates).
create or replace temp macro months_between(a, b) as
    (year(b) - year(a)) * 12 + (month(b) - month(a));

-- A text amount as a finite double, else null.
create or replace temp macro parse_number(value) as
    case when isfinite(try_cast(trim(value) as double)) then try_cast(trim(value) as double) end;
