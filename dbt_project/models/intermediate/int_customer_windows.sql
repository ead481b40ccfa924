{#-
    The window features of every customer active at a cutoff: counts, amounts, channel mix and
    recency over the last 24 hours, 7 days and 30 days before cutoff_ts. A new window feature is
    one more aggregate in `customer_windows` (see dbt_project/README.md).
-#}
{%- set online = online_spec() -%}

with

cutoff_days as (

    select * from {{ ref('int_snapshot_cutoff_days') }}

),

transactions as (

    select * from {{ ref('int_snapshot_transactions') }}

),

window_transactions as (

    -- Each transaction paired with every cutoff whose lookback window holds it. The 24-hour,
    -- 7-day and 30-day windows end at cutoff_ts, so they hold the last 1, 7 and 30 days.
    select
        cutoff_days.cutoff_date,
        cutoff_days.cutoff_ts,
        transactions.customer_id,
        transactions.merchant_id,
        transactions.merchant_category,
        transactions.country,
        transactions.channel,
        transactions.amount,
        transactions.event_ts,
        cutoff_days.days_back < 1 as in_24h,
        cutoff_days.days_back < 7 as in_7d,
        cutoff_days.days_back < 30 as in_30d

    from cutoff_days
    inner join transactions
        on transactions.event_day = cutoff_days.event_day

),

customer_windows as (

    select
        cutoff_date,
        cutoff_ts,
        customer_id,

        ----------  activity
        count(case when in_24h then 1 end) as txn_count_24h,
        count(case when in_7d then 1 end) as txn_count_7d,
        count(case when in_30d then 1 end) as txn_count_30d,

        ----------  amounts
        coalesce(sum(case when in_24h then amount end), 0) as amount_sum_24h,
        coalesce(sum(case when in_7d then amount end), 0) as amount_sum_7d,
        coalesce(sum(case when in_30d then amount end), 0) as amount_sum_30d,
        avg(case when in_30d then amount end) as amount_mean_30d,
        max(case when in_30d then amount end) as amount_max_30d,

        ----------  channel mix
        cast(count(case when in_30d and channel = 'online' then 1 end) as double)
            / nullif(count(case when in_30d then 1 end), 0) as online_share_30d,

        ----------  recency
        max(event_ts) as last_txn_ts

    from window_transactions
    group by cutoff_date, cutoff_ts, customer_id

),

active_customers as (

    -- The cutoff holds every customer active within the online TTL, so switching it in online
    -- drops nobody the store still serves.
    select * from customer_windows
    where last_txn_ts >= {{ dbt.dateadd('day', -online.ttl_days, 'cutoff_ts') }}

)

select * from active_customers
