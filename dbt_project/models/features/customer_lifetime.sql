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
    Lifetime totals per customer, kept as a change log so that the nightly never re-reads the
    whole transaction history: one row per customer and cutoff at which its totals changed (its
    first transaction, chargebacks reported that day). The totals as of cutoff D are a customer's
    latest row at or before D.

    An incremental run for D recomputes the days from the one after the last change recorded
    before D up to D (normally D alone; a night that never ran is caught up, a day without
    changes gives no rows), starting from each customer's totals before that range. It reads only
    those days, the lookback window before them (where a reported chargeback's transaction
    almost always is) and this table; a chargeback on an older transaction is looked up in the
    whole history, which DuckDB skips entirely when there is none. A full refresh computes every
    change from the first raw day with no prior totals: the same rows.
-#}
{%- set lookback_days = feature_lookback_days() -%}
{%- set range_start = lifetime_range_start() if is_incremental() else none -%}
{%- set range_end_ts = cutoff_ts(processing_day()) -%}
{%- if range_start is not none -%}
    {%- set range_start_ts = 'cast(' ~ range_start ~ ' as timestamp)' -%}
    {%- set lookback_start_ts = dbt.dateadd('day', -lookback_days, range_start_ts) -%}
{%- endif %}

with

prior_changes as (

    -- Totals recorded before the range (none on a full refresh).
    select customer_id, cutoff_date, first_txn_ts, chargebacks_total
    {%- if range_start is not none %}
    from {{ this }}
    where cutoff_date < {{ range_start }}
    {%- else %}
    from (select
            cast(null as varchar) as customer_id,
            cast(null as date) as cutoff_date,
            cast(null as timestamp) as first_txn_ts,
            cast(0 as bigint) as chargebacks_total) as nothing
    where false
    {%- endif %}

),

prior as (

    -- Each customer's totals just before the range: its latest change.
    select customer_id, first_txn_ts, chargebacks_total
    from (
        select
            *,
            row_number() over (partition by customer_id order by cutoff_date desc) as change_rank
        from prior_changes
    ) as ranked
    where change_rank = 1

),

range_transactions as (

    select customer_id, event_ts
    from {{ ref('stg_transactions') }}
    where event_ts < {{ range_end_ts }}
    {%- if range_start is not none %}
        and event_ts >= {{ range_start_ts }}
    {%- endif %}

),

range_chargebacks as (

    -- Chargebacks reported in the range; one counts from the cutoff of the day it was reported.
    select transaction_id, reported_at
    from {{ ref('stg_chargebacks') }}
    where reported_at < {{ range_end_ts }}
    {%- if range_start is not none %}
        and reported_at >= {{ range_start_ts }}
    {%- endif %}

),

recent_transactions as (

    select transaction_id, customer_id
    from {{ ref('stg_transactions') }}
    where event_ts < {{ range_end_ts }}
    {%- if range_start is not none %}
        and event_ts >= {{ lookback_start_ts }}
    {%- endif %}

),

recent_matches as (

    select
        range_chargebacks.transaction_id,
        range_chargebacks.reported_at,
        recent_transactions.customer_id
    from range_chargebacks
    inner join recent_transactions
        on recent_transactions.transaction_id = range_chargebacks.transaction_id

),

unmatched_chargebacks as (

    select range_chargebacks.*
    from range_chargebacks
    left join recent_matches
        on recent_matches.transaction_id = range_chargebacks.transaction_id
    where recent_matches.transaction_id is null

),

older_matches as (

    -- Only chargebacks whose transaction is older than the lookback window (normally none).
    select
        unmatched_chargebacks.transaction_id,
        unmatched_chargebacks.reported_at,
        transactions.customer_id
    from unmatched_chargebacks
    inner join {{ ref('stg_transactions') }} as transactions
        on transactions.transaction_id = unmatched_chargebacks.transaction_id
    {%- if range_start is not none %}
    where transactions.event_ts < {{ lookback_start_ts }}
    {%- else %}
    where false
    {%- endif %}

),

attributed_chargebacks as (

    select * from recent_matches
    union all
    select * from older_matches

),

first_in_range as (

    select customer_id, min(event_ts) as first_txn_ts
    from range_transactions
    group by customer_id

),

changes as (

    -- (customer, day) pairs whose totals change: a first transaction ever, chargebacks reported.
    select customer_id, cutoff_date, sum(new_chargebacks) as new_chargebacks
    from (
        select
            first_in_range.customer_id,
            cast(first_in_range.first_txn_ts as date) as cutoff_date,
            0 as new_chargebacks
        from first_in_range
        left join prior
            on prior.customer_id = first_in_range.customer_id
        where prior.first_txn_ts is null

        union all

        select
            customer_id,
            cast(reported_at as date) as cutoff_date,
            1 as new_chargebacks
        from attributed_chargebacks
    ) as events
    group by customer_id, cutoff_date

),

totals as (

    select
        changes.customer_id,
        changes.cutoff_date,
        coalesce(
            prior.first_txn_ts,
            case
                when cast(first_in_range.first_txn_ts as date) <= changes.cutoff_date
                    then first_in_range.first_txn_ts
            end
        ) as first_txn_ts,
        cast(
            coalesce(prior.chargebacks_total, 0)
            + sum(changes.new_chargebacks) over (
                partition by changes.customer_id
                order by changes.cutoff_date
                rows between unbounded preceding and current row
            )
            as bigint
        ) as chargebacks_total

    from changes
    left join prior
        on prior.customer_id = changes.customer_id
    left join first_in_range
        on first_in_range.customer_id = changes.customer_id

)

select
    customer_id,
    cutoff_date,
    first_txn_ts,
    chargebacks_total,
    '{{ invocation_id }}' as dbt_invocation_id

from totals
