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
    The features of each customer active at a cutoff, assembled from the intermediate models
    (models/intermediate/, ephemeral: compiled into this model's query). An incremental run
    computes the processing day's cutoff alone (snapshot_is_incremental()); the first build and
    a full refresh compute every cutoff from the first raw day.
-#}
{#- The online feature set (names, types, TTL) comes from this model's YAML, meta.online. -#}
{%- set online = online_spec() -%}

with

cutoffs as (

    select * from {{ ref('int_snapshot_cutoffs') }}

),

customer_windows as (

    select * from {{ ref('int_customer_windows') }}

),

diversity as (

    select * from {{ ref('int_customer_diversity') }}

),

usual_countries as (

    select * from {{ ref('int_customer_usual_country') }}

),

lifetime as (

    select * from {{ ref('int_customer_lifetime_as_of') }}

),

snapshot as (

    -- Every window feature, then the features of the other intermediate models.
    select
        customer_windows.*,
        cutoffs.available_at,
        coalesce(diversity.distinct_merchants_30d, 0) as distinct_merchants_30d,
        coalesce(diversity.distinct_categories_30d, 0) as distinct_categories_30d,
        coalesce(diversity.distinct_countries_30d, 0) as distinct_countries_30d,
        usual_countries.usual_country,
        lifetime.chargebacks_30d

    from customer_windows
    inner join cutoffs
        on cutoffs.cutoff_date = customer_windows.cutoff_date
    left join lifetime
        on lifetime.cutoff_date = customer_windows.cutoff_date
        and lifetime.customer_id = customer_windows.customer_id
    left join diversity
        on diversity.cutoff_date = customer_windows.cutoff_date
        and diversity.customer_id = customer_windows.customer_id
    left join usual_countries
        on usual_countries.cutoff_date = customer_windows.cutoff_date
        and usual_countries.customer_id = customer_windows.customer_id

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
