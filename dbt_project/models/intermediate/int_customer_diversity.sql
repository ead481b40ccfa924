{#-
    Distinct merchants, merchant categories and merchant countries of each customer over the
    last 30 days before a cutoff. The one place the two builds are written differently, each
    exact: one cutoff counts the distinct values of its window; every cutoff counts a transaction
    that opens a value, one whose previous transaction with that value lies before the window.
-#}

with

cutoff_days as (

    select * from {{ ref('int_snapshot_cutoff_days') }}

),

transactions as (

    select * from {{ ref('int_snapshot_transactions') }}

),

diversity as (

    {%- if snapshot_is_incremental() %}
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

)

select * from diversity
