{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook=[
            before_begin("{{ claim_row() }}"),
            "{{ replace_day_partition('cutoff_date', processing_day()) }}",
        ]
    )
}}

{#- The online feature set (names, types, TTL) comes from this model's YAML, meta.online. -#}
{%- set online = online_spec() -%}
{#- Read enough history for the longest window (30 days) and for the TTL, whichever is longer. -#}
{%- set lookback_days = feature_lookback_days() -%}

with

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

    from {{ ref('stg_transactions') }}
    where event_ts < {{ cutoff_ts(processing_day()) }}
    {%- if is_incremental() %}
        -- Incremental run: only the lookback window of cutoff D is read.
        and event_ts >= {{ dbt.dateadd('day', -lookback_days, cutoff_ts(processing_day())) }}
    {%- endif %}

),

transactions as (

    select
        *
        {%- if not is_incremental() %},
        -- Days since the customer's previous transaction with the same merchant, category and
        -- country (null: none), for the distinct counts of every cutoff (see `diversity`).
        {{ dbt.datediff('lag(event_day) over (partition by customer_id, merchant_id order by event_ts)', 'event_day', 'day') }}
            as merchant_gap_days,
        {{ dbt.datediff('lag(event_day) over (partition by customer_id, merchant_category order by event_ts)', 'event_day', 'day') }}
            as category_gap_days,
        {{ dbt.datediff('lag(event_day) over (partition by customer_id, country order by event_ts)', 'event_day', 'day') }}
            as country_gap_days
        {%- endif %}

    from scanned

),

lifetime_changes as (

    -- Totals over the whole history (first transaction, chargebacks), kept incrementally by
    -- customer_lifetime so that this model never re-reads that history.
    select * from {{ ref('customer_lifetime') }}
    {%- if is_incremental() %}
    where cutoff_date <= {{ processing_day() }}
    {%- endif %}

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

cutoff_days as (

    -- Each cutoff with the days its lookback window covers, from its own day (0 days back) to
    -- lookback_days - 1 days back: a transaction is in the window exactly when its day is one of
    -- them (before cutoff_ts, at or after cutoff_ts - lookback_days). Joining on the day keeps
    -- the pairing an equi-join whether one cutoff is built or all of them.
    select
        cutoff_times.cutoff_date,
        cutoff_times.cutoff_ts,
        days_back.n as days_back,
        cast({{ dbt.dateadd('day', '-days_back.n', 'cutoff_times.cutoff_date') }} as date) as event_day

    from cutoff_times
    cross join ({{ number_series(0, lookback_days - 1) }}) as days_back

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

diversity as (

    -- Distinct merchants, categories and merchant countries over the last 30 days.
    {%- if is_incremental() %}
    -- One cutoff: count the distinct (customer, value) pairs of its 30-day window.
    select
        {{ processing_day() }} as cutoff_date,
        customer_id,
        count(case when dimension = 'merchant' then 1 end) as distinct_merchants_30d,
        count(case when dimension = 'category' then 1 end) as distinct_categories_30d,
        count(case when dimension = 'country' then 1 end) as distinct_countries_30d

    from (
        {%- for dimension, column in [('merchant', 'merchant_id'), ('category', 'merchant_category'), ('country', 'country')] %}
        select distinct customer_id, '{{ dimension }}' as dimension, {{ column }} as value
        from transactions
        where event_day >= cast({{ dbt.dateadd('day', -29, processing_day()) }} as date)
        {{ 'union all' if not loop.last }}
        {%- endfor %}
    ) as window_values
    group by customer_id
    {%- else %}
    -- Every cutoff: a transaction starts a value in a cutoff's 30-day window exactly when the
    -- customer's previous one with that value lies before the window, so each distinct value
    -- is counted once, without a distinct count per cutoff.
    select
        cutoff_days.cutoff_date,
        transactions.customer_id,
        {%- for dimension, plural in [('merchant', 'merchants'), ('category', 'categories'), ('country', 'countries')] %}
        count(
            case when coalesce(transactions.{{ dimension }}_gap_days, 30) > 29 - cutoff_days.days_back then 1 end
        ) as distinct_{{ plural }}_30d{{ ',' if not loop.last }}
        {%- endfor %}

    from cutoff_days
    inner join transactions
        on transactions.event_day = cutoff_days.event_day
    where cutoff_days.days_back < 30
    group by cutoff_days.cutoff_date, transactions.customer_id
    {%- endif %}

),

active_customers as (

    -- The cutoff holds every customer active within the online TTL, so switching it in online
    -- drops nobody the store still serves.
    select * from customer_windows
    where last_txn_ts >= {{ dbt.dateadd('day', -online.ttl_days, 'cutoff_ts') }}

),

{%- if is_incremental() %}

country_counts as (

    -- Each country's transactions over the cutoff's 30 days and its latest use.
    select
        {{ processing_day() }} as cutoff_date,
        customer_id,
        country,
        count(*) as country_txn_count,
        max(event_ts) as country_last_ts

    from transactions
    where event_day >= cast({{ dbt.dateadd('day', -29, processing_day()) }} as date)
    group by customer_id, country

),
{%- else %}

country_days as (

    select
        customer_id,
        country,
        event_day,
        count(*) as country_txn_count,
        max(event_ts) as country_last_ts

    from transactions
    group by customer_id, country, event_day

),

country_counts as (

    -- Per cutoff, each country's transactions over 30 days and its latest use, from daily
    -- counts (far fewer rows to pair with the cutoffs than the transactions).
    select
        cutoff_days.cutoff_date,
        country_days.customer_id,
        country_days.country,
        sum(country_days.country_txn_count) as country_txn_count,
        max(country_days.country_last_ts) as country_last_ts

    from cutoff_days
    inner join country_days
        on country_days.event_day = cutoff_days.event_day
    where cutoff_days.days_back < 30
    group by cutoff_days.cutoff_date, country_days.customer_id, country_days.country

),
{%- endif %}

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

lifetime_as_of as (

    -- Each customer's latest lifetime change at or before the cutoff.
    select
        active_customers.cutoff_date,
        active_customers.customer_id,
        max(lifetime_changes.cutoff_date) as changed_on

    from active_customers
    inner join lifetime_changes
        on lifetime_changes.customer_id = active_customers.customer_id
        and lifetime_changes.cutoff_date <= active_customers.cutoff_date
    group by active_customers.cutoff_date, active_customers.customer_id

),

lifetime as (

    select
        lifetime_as_of.cutoff_date,
        lifetime_as_of.customer_id,
        lifetime_changes.first_txn_ts,
        lifetime_changes.chargebacks_total

    from lifetime_as_of
    inner join lifetime_changes
        on lifetime_changes.customer_id = lifetime_as_of.customer_id
        and lifetime_changes.cutoff_date = lifetime_as_of.changed_on

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
        coalesce(diversity.distinct_merchants_30d, 0) as distinct_merchants_30d,
        coalesce(diversity.distinct_categories_30d, 0) as distinct_categories_30d,
        coalesce(diversity.distinct_countries_30d, 0) as distinct_countries_30d,
        usual_countries.usual_country,
        active_customers.online_share_30d,
        active_customers.last_txn_ts,
        {{ dbt.datediff('cast(lifetime.first_txn_ts as date)', 'active_customers.cutoff_date', 'day') }}
            as tenure_days,
        lifetime.chargebacks_total

    from active_customers
    left join lifetime
        on lifetime.cutoff_date = active_customers.cutoff_date
        and lifetime.customer_id = active_customers.customer_id
    left join diversity
        on diversity.cutoff_date = active_customers.cutoff_date
        and diversity.customer_id = active_customers.customer_id
    left join usual_countries
        on usual_countries.cutoff_date = active_customers.cutoff_date
        and usual_countries.customer_id = active_customers.customer_id

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
