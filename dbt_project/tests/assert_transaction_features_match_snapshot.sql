-- One definition for training and serving: every online feature of a transaction equals its
-- customer's value in the snapshot it saw, or the declared default when the customer is absent.
-- It judges the transactions the run for processing_day joined (macros/day_partition.sql).
{%- set online = online_spec() %}

with

transactions as (

    select * from {{ ref('transaction_features') }}
    where {{ built_rows_filter('transaction_features') }}

),

snapshots as (

    -- Only the cutoffs those transactions saw, not every day's snapshot.
    select * from {{ ref('customer_snapshot') }}
    where cutoff_date in (select snapshot_cutoff from transactions)

),

compared as (

    select
        transactions.transaction_id,
        transactions.snapshot_cutoff,
        snapshots.customer_id is not null as in_snapshot,
        {%- for feature in online.features %}
        transactions.{{ feature.name }} is distinct from (
            case
                when snapshots.customer_id is null then {{ online_default(feature) }}
                else snapshots.{{ feature.name }}
            end
        ) as {{ feature.name }}_differs{{ "," if not loop.last }}
        {%- endfor %}

    from transactions
    left join snapshots
        on snapshots.customer_id = transactions.customer_id
        and snapshots.cutoff_date = transactions.snapshot_cutoff

)

select * from compared
where
    {%- for feature in online.features %}
    {{ feature.name }}_differs{{ " or" if not loop.last }}
    {%- endfor %}
