{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook=[
            before_begin("{{ claim_row() }}"),
            "{{ replace_day_partition(processing_day()) }}",
        ]
    )
}}

{#-
    Incremental by day: a run for day D changes two sets of transactions, and replaces exactly
    those (delete, then append, in one transaction): the transactions of day D (a new or
    replaced raw revision), and those that saw cutoff D's snapshot, the one the run just
    (re)computed (the next days' transactions when they are already loaded, e.g. on a re-run of
    an older day). Every other row joins a raw revision and a snapshot the run did not change.
    So a night reads one day of transactions, not the history, and a backfill of an older day
    still reaches every transaction it affects. The first build and a full refresh join every
    transaction.
-#}
{%- set online = online_spec() -%}

with

transactions as (

    select * from {{ ref('stg_transactions') }}
    {%- if is_incremental() %}
    where dt = {{ processing_day() }}
        or (
            event_ts >= {{ available_at(cutoff_ts(processing_day())) }}
            and event_ts < {{ dbt.dateadd('day', 1, available_at(cutoff_ts(processing_day()))) }}
        )
    {%- endif %}

),

snapshots as (

    select * from {{ ref('customer_snapshot') }}

),

first_cutoff as (

    -- Cutoffs start at the first raw day: a transaction before that snapshot was published saw none.
    select min(dt) as first_cutoff_date from {{ ref('stg_transactions') }}

),

transactions_with_cutoff as (

    -- The snapshot a transaction saw: the latest cutoff whose availability time (by rule) is at
    -- or before the transaction's time.
    select
        transactions.*,
        case
            when {{ latest_available_cutoff('transactions.event_ts') }} >= first_cutoff.first_cutoff_date
                then {{ latest_available_cutoff('transactions.event_ts') }}
        end as snapshot_cutoff

    from transactions
    cross join first_cutoff

),

joined as (

    -- The customer's row in that snapshot, or the declared defaults when the customer is not in
    -- it: exactly what the online store returns for an unknown entity.
    select
        transactions_with_cutoff.transaction_id,
        transactions_with_cutoff.customer_id,
        transactions_with_cutoff.merchant_id,
        transactions_with_cutoff.merchant_category,
        transactions_with_cutoff.amount,
        transactions_with_cutoff.currency,
        transactions_with_cutoff.country,
        transactions_with_cutoff.channel,
        transactions_with_cutoff.event_ts,
        transactions_with_cutoff.dt,
        transactions_with_cutoff.batch_id,
        transactions_with_cutoff.revision,
        transactions_with_cutoff.snapshot_cutoff,
        {%- for feature in online.features %}
        case
            when snapshots.customer_id is null then {{ online_default(feature) }}
            else snapshots.{{ feature.name }}
        end as {{ feature.name }}{{ "," if not loop.last }}
        {%- endfor %}

    from transactions_with_cutoff
    left join snapshots
        on snapshots.customer_id = transactions_with_cutoff.customer_id
        and snapshots.cutoff_date = transactions_with_cutoff.snapshot_cutoff

)

select * from joined
