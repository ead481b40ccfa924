{#-
    Each cutoff with the days its lookback window covers, from its own day (0 days back) to
    lookback_days - 1 days back: a transaction is in the window exactly when its day is one of
    them (before cutoff_ts, at or after cutoff_ts - lookback_days). Joining on the day keeps the
    pairing of transactions and cutoffs an equi-join whether one cutoff is built or all of them.
-#}
{%- set lookback_days = feature_lookback_days() -%}

with

cutoffs as (

    select * from {{ ref('int_snapshot_cutoffs') }}

),

days_back as (

    {{ number_series(0, lookback_days - 1) }}

),

cutoff_days as (

    select
        cutoffs.cutoff_date,
        cutoffs.cutoff_ts,
        days_back.n as days_back,
        cast({{ dbt.dateadd('day', '-days_back.n', 'cutoffs.cutoff_date') }} as date) as event_day

    from cutoffs
    cross join days_back

)

select * from cutoff_days
