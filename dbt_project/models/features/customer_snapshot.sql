{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ replace_day_partition('cutoff_date', processing_day()) }}"
    )
}}

{#- The online feature set (names, types, TTL) comes from this model's YAML, meta.online. -#}
{%- set online = online_spec() -%}
{#- Read enough history for the longest window (30 days) and for the TTL, whichever is longer. -#}
{%- set lookback_days = [online.ttl_days, 30] | max -%}

with

transactions as (

    select * from {{ ref('stg_transactions') }}
    {%- if is_incremental() %}
    -- Incremental run: only the lookback window of cutoff D is read.
    where event_ts >= {{ dbt.dateadd('day', -lookback_days, cutoff_ts(processing_day())) }}
        and event_ts < {{ cutoff_ts(processing_day()) }}
    {%- endif %}

),

transaction_history as (

    -- Whole history, for the two features that are defined over it (tenure, chargebacks).
    select
        transaction_id,
        customer_id,
        event_ts

    from {{ ref('stg_transactions') }}

),

chargebacks as (

    select * from {{ ref('stg_chargebacks') }}

),

cutoffs as (

    {%- if is_incremental() %}
    -- Incremental run: only the processing day's cutoff.
    select {{ processing_day() }} as cutoff_date
    {%- else %}
    -- First build or full refresh: every cutoff from the first raw day to the processing day.
    select calendar_day as cutoff_date
    from ({{ day_series('(select min(dt) from ' ~ ref('stg_transactions') ~ ')', processing_day()) }}) as days
    {%- endif %}

),

cutoff_times as (

    select
        cutoff_date,
        {{ cutoff_ts('cutoff_date') }} as cutoff_ts

    from cutoffs

),

window_transactions as (

    -- Each transaction paired with every cutoff whose lookback window holds it. A transaction at
    -- or after a cutoff's cutoff_ts is invisible to that cutoff.
    select
        cutoff_times.cutoff_date,
        cutoff_times.cutoff_ts,
        transactions.customer_id,
        transactions.merchant_id,
        transactions.merchant_category,
        transactions.country,
        transactions.channel,
        transactions.amount,
        transactions.event_ts,
        transactions.event_ts >= {{ dbt.dateadd('day', -1, 'cutoff_times.cutoff_ts') }} as in_24h,
        transactions.event_ts >= {{ dbt.dateadd('day', -7, 'cutoff_times.cutoff_ts') }} as in_7d,
        transactions.event_ts >= {{ dbt.dateadd('day', -30, 'cutoff_times.cutoff_ts') }} as in_30d

    from cutoff_times
    inner join transactions
        on transactions.event_ts < cutoff_times.cutoff_ts
        and transactions.event_ts >= {{ dbt.dateadd('day', -lookback_days, 'cutoff_times.cutoff_ts') }}

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

        ----------  diversity
        count(distinct case when in_30d then merchant_id end) as distinct_merchants_30d,
        count(distinct case when in_30d then merchant_category end) as distinct_categories_30d,
        count(distinct case when in_30d then country end) as distinct_countries_30d,

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

),

country_counts as (

    select
        cutoff_date,
        customer_id,
        country,
        count(*) as country_txn_count,
        max(event_ts) as country_last_ts

    from window_transactions
    where in_30d
    group by cutoff_date, customer_id, country

),

ranked_countries as (

    -- Most frequent country over 30 days; ties go to the most recently used, then alphabetical.
    select
        *,
        row_number() over (
            partition by cutoff_date, customer_id
            order by country_txn_count desc, country_last_ts desc, country
        ) as country_rank

    from country_counts

),

usual_countries as (

    select
        cutoff_date,
        customer_id,
        country as usual_country

    from ranked_countries
    where country_rank = 1

),

first_transactions as (

    -- Every customer in a cutoff has a transaction before it, so the first transaction over the
    -- whole history is also the first one as of the cutoff.
    select
        customer_id,
        min(event_ts) as first_txn_ts

    from transaction_history
    group by customer_id

),

customer_chargebacks as (

    -- Chargebacks exist for a cutoff only once reported, strictly before its cutoff_ts.
    select
        cutoff_times.cutoff_date,
        transaction_history.customer_id,
        count(*) as chargebacks_total

    from cutoff_times
    inner join chargebacks
        on chargebacks.reported_at < cutoff_times.cutoff_ts
    inner join transaction_history
        on transaction_history.transaction_id = chargebacks.transaction_id
    group by cutoff_times.cutoff_date, transaction_history.customer_id

),

snapshot as (

    select
        active_customers.customer_id,
        active_customers.cutoff_date,
        active_customers.cutoff_ts,
        {{ available_at('active_customers.cutoff_ts') }} as available_at,
        active_customers.txn_count_24h,
        active_customers.txn_count_7d,
        active_customers.txn_count_30d,
        active_customers.amount_sum_24h,
        active_customers.amount_sum_7d,
        active_customers.amount_sum_30d,
        active_customers.amount_mean_30d,
        active_customers.amount_max_30d,
        active_customers.distinct_merchants_30d,
        active_customers.distinct_categories_30d,
        active_customers.distinct_countries_30d,
        usual_countries.usual_country,
        active_customers.online_share_30d,
        active_customers.last_txn_ts,
        {{ dbt.datediff('cast(first_transactions.first_txn_ts as date)', 'active_customers.cutoff_date', 'day') }}
            as tenure_days,
        coalesce(customer_chargebacks.chargebacks_total, 0) as chargebacks_total

    from active_customers
    inner join first_transactions
        on first_transactions.customer_id = active_customers.customer_id
    left join usual_countries
        on usual_countries.cutoff_date = active_customers.cutoff_date
        and usual_countries.customer_id = active_customers.customer_id
    left join customer_chargebacks
        on customer_chargebacks.cutoff_date = active_customers.cutoff_date
        and customer_chargebacks.customer_id = active_customers.customer_id

),

final as (

    -- The online features in their declared order and types, then lineage.
    select
        customer_id,
        cutoff_date,
        cutoff_ts,
        available_at,
        {%- for feature in online.features %}
        cast({{ feature.name }} as {{ feature.type }}) as {{ feature.name }},
        {%- endfor %}
        '{{ invocation_id }}' as dbt_invocation_id,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as timestamp) as built_at

    from snapshot

)

select * from final
