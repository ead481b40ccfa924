{#-
    The transactions a build of customer_snapshot reads: before the processing day's cutoff,
    and on an incremental run only its lookback window (the longest feature window, 30 days, or
    the online TTL, whichever is longer).
-#}
{%- set lookback_days = feature_lookback_days() -%}

with

transactions as (

    select * from {{ ref('stg_transactions') }}

),

scanned as (

    select
        customer_id,
        merchant_id,
        merchant_category,
        country,
        channel,
        amount,
        event_ts,
        cast(event_ts as date) as event_day

    from transactions
    where event_ts < {{ cutoff_ts(processing_day()) }}
    {%- if snapshot_is_incremental() %}
        -- Incremental run: only the lookback window of cutoff D is read.
        and event_ts >= {{ dbt.dateadd('day', -lookback_days, cutoff_ts(processing_day())) }}
    {%- endif %}

),

with_gaps as (

    select
        *
        {%- if not snapshot_is_incremental() %},
        -- Days since the customer's previous transaction with the same merchant, category and
        -- country (null: none), for the distinct counts of every cutoff (int_customer_diversity).
        {{ dbt.datediff('lag(event_day) over (partition by customer_id, merchant_id order by event_ts)', 'event_day', 'day') }}
            as merchant_gap_days,
        {{ dbt.datediff('lag(event_day) over (partition by customer_id, merchant_category order by event_ts)', 'event_day', 'day') }}
            as category_gap_days,
        {{ dbt.datediff('lag(event_day) over (partition by customer_id, country order by event_ts)', 'event_day', 'day') }}
            as country_gap_days
        {%- endif %}

    from scanned

)

select * from with_gaps
