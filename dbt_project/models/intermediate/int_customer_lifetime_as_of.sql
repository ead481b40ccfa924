{#-
    Recent chargebacks of every customer active at a cutoff, from customer_lifetime's change log
    (which keeps the totals over the whole history incrementally, so a nightly never re-reads
    it): the total at the latest change at or before the cutoff, less the total at the latest
    change before the window. A count over the whole history would grow with the calendar and
    drift against every past monitoring reference; over the longest feature window it is
    stationary once the windows are full.
-#}
{%- set window_days = longest_feature_window_days() -%}

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

    -- Each customer's latest lifetime change at or before the cutoff, and the latest one at or
    -- before the window's first day (the totals the window's count starts from).
    select
        active_customers.cutoff_date,
        active_customers.customer_id,
        max(lifetime_changes.cutoff_date) as changed_on,
        max(
            case
                when lifetime_changes.cutoff_date
                    <= {{ dbt.dateadd('day', -window_days, 'active_customers.cutoff_date') }}
                    then lifetime_changes.cutoff_date
            end
        ) as changed_before_window

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
        at_cutoff.chargebacks_total - coalesce(before_window.chargebacks_total, 0)
            as chargebacks_30d

    from latest_changes
    inner join lifetime_changes as at_cutoff
        on at_cutoff.customer_id = latest_changes.customer_id
        and at_cutoff.cutoff_date = latest_changes.changed_on
    left join lifetime_changes as before_window
        on before_window.customer_id = latest_changes.customer_id
        and before_window.cutoff_date = latest_changes.changed_before_window

)

select * from lifetime_as_of
