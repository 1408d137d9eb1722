-- A raw text value, trimmed, or null when it is blank or a null marker that exports write for a
-- missing value: NULL (any case), \N, None, N/A, #N/A. (NaN is a number; parse_number refuses it.)
-- Markers are short, so a longer value is kept without comparing it.
create or replace temp macro unless_null_marker(trimmed) as
case
    when strlen(trimmed) > 4 then trimmed
    when lower(trimmed) in ('', 'null', '\n', 'none', 'n/a', '#n/a') then null
    else trimmed
end;

create or replace temp macro clean_text(value) as
unless_null_marker(trim(value));
