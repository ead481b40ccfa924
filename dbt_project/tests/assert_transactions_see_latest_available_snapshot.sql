-- Point in time: a transaction never sees a snapshot published after it (available_at after
-- event_ts), and it sees the latest one published before it (the next cutoff is not available
-- yet). A null snapshot_cutoff is allowed only before the first cutoff's availability. It judges
-- the transactions the run for processing_day joined (macros/day_partition.sql).
with

transactions as (

    select * from {{ ref('transaction_features') }}
    where {{ built_rows_filter('transaction_features') }}

),

first_cutoff as (

    select min(dt) as first_cutoff_date from {{ ref('stg_transactions') }}

),

checked as (

    select
        transactions.transaction_id,
        transactions.event_ts,
        transactions.snapshot_cutoff,
        {{ available_at(cutoff_ts('transactions.snapshot_cutoff')) }} as seen_available_at,
        {{ available_at(cutoff_ts(dbt.dateadd('day', 1, 'transactions.snapshot_cutoff'))) }}
            as next_available_at,
        {{ available_at(cutoff_ts('first_cutoff.first_cutoff_date')) }} as first_available_at

    from transactions
    cross join first_cutoff

)

select * from checked
where (snapshot_cutoff is not null and seen_available_at > event_ts)
    or (snapshot_cutoff is not null and next_available_at <= event_ts)
    or (snapshot_cutoff is null and first_available_at <= event_ts)
