-- Every customer in a snapshot has a current transaction within the online TTL before its cutoff:
-- the snapshot serves the active customers and no one else (the snapshot gate checks the count).
-- It judges the cutoff the run for processing_day built (macros/day_partition.sql) and reads only
-- the TTL's days of transactions before it, not the history.
{%- set ttl_days = online_spec().ttl_days %}
{%- set day = date_var('processing_day') %}

with

snapshots as (

    select * from {{ ref('customer_snapshot') }}
    where {{ built_rows_filter('customer_snapshot') }}

),

transactions as (

    select * from {{ ref('stg_transactions') }}
    {%- if day is not none %}
    -- A row's event is inside its day dt (ingestion's rule): the partitions the TTL covers.
    where dt between cast({{ dbt.dateadd('day', -ttl_days, day) }} as date) and {{ day }}
    {%- endif %}

),

ttl_activity as (

    select
        snapshots.customer_id,
        snapshots.cutoff_date,
        count(transactions.transaction_id) as ttl_transactions

    from snapshots
    left join transactions
        on transactions.customer_id = snapshots.customer_id
        and transactions.event_ts < snapshots.cutoff_ts
        and transactions.event_ts >= {{ dbt.dateadd('day', -ttl_days, 'snapshots.cutoff_ts') }}
    group by snapshots.customer_id, snapshots.cutoff_date

)

select * from ttl_activity
where ttl_transactions = 0
