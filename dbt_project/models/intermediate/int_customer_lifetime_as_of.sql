{#-
    Tenure and chargebacks of every customer active at a cutoff, from its latest change in
    customer_lifetime at or before the cutoff: that change log keeps the totals over the whole
    history incrementally, so a nightly never re-reads it.
-#}

with

active_customers as (

    select * from {{ ref('int_customer_windows') }}

),

lifetime_changes as (

    select * from {{ ref('customer_lifetime') }}
    {%- if snapshot_is_incremental() %}
    where cutoff_date <= {{ processing_day() }}
    {%- endif %}

),

latest_changes as (

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

lifetime_as_of as (

    select
        latest_changes.cutoff_date,
        latest_changes.customer_id,
        {{ dbt.datediff('cast(lifetime_changes.first_txn_ts as date)', 'latest_changes.cutoff_date', 'day') }}
            as tenure_days,
        lifetime_changes.chargebacks_total

    from latest_changes
    inner join lifetime_changes
        on lifetime_changes.customer_id = latest_changes.customer_id
        and lifetime_changes.cutoff_date = latest_changes.changed_on

)

select * from lifetime_as_of
