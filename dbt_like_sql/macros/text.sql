-- A raw text value, trimmed, or null when it is blank or a null marker that exports write for a
-- missing value: NULL (any case), \N, None, N/A, #N/A. (NaN is a number; parse_number refuses it.)
create or replace temp macro clean_text(value) as
    case when lower(trim(value)) not in ('', 'null', '\n', 'none', 'n/a', '#n/a') then trim(value) end;
