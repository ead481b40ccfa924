-- cutoff_ts and available_at of every snapshot row follow the rule (D+1 00:00, plus the
-- publication lag), so availability never depends on when a build happened to run. It judges
-- the cutoff the run for processing_day built (macros/day_partition.sql).
with

snapshots as (

    select * from {{ ref('customer_snapshot') }}
    where {{ built_rows_filter('customer_snapshot') }}

)

select
    customer_id,
    cutoff_date,
    cutoff_ts,
    available_at

from snapshots
where cutoff_ts <> {{ cutoff_ts('cutoff_date') }}
    or available_at <> {{ available_at(cutoff_ts('cutoff_date')) }}
