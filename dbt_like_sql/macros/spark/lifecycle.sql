-- Spark bodies of the lifecycle macros in ../lifecycle.sql (Spark SQL).

-- A bigint holds any Spark timestamp (years 1-9999) in microseconds times 10.
create or replace temp macro lifecycle_key(occurred_at, type_rank) as
unix_micros(occurred_at) * 10 + type_rank;
