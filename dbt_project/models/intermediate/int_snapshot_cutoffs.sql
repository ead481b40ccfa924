{#- The cutoffs this build of customer_snapshot computes, timed by the pipeline's rules. -#}

with

transactions as (

    select * from {{ ref('stg_transactions') }}

),

cutoffs as (

    {%- if snapshot_is_incremental() %}
    -- Incremental run: only the processing day's cutoff.
    select {{ processing_day() }} as cutoff_date
    {%- else %}
    -- First build or full refresh: every cutoff from the first raw day to the processing day.
    select calendar_day as cutoff_date
    from ({{ day_series('(select min(dt) from transactions)', processing_day()) }}) as days
    {%- endif %}

),

cutoff_times as (

    select
        cutoff_date,
        {{ cutoff_ts('cutoff_date') }} as cutoff_ts,
        {{ available_at(cutoff_ts('cutoff_date')) }} as available_at

    from cutoffs

)

select * from cutoff_times
