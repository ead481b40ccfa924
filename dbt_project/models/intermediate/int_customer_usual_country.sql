{#-
    Each customer's most frequent merchant country over the last 30 days before a cutoff; ties
    go to the most recently used, then alphabetically.
-#}

with

cutoff_days as (

    select * from {{ ref('int_snapshot_cutoff_days') }}

),

transactions as (

    select * from {{ ref('int_snapshot_transactions') }}

),

{%- if snapshot_is_incremental() %}

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

)

select * from usual_countries
