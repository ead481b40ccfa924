{#
    Pre-hook of the day-partitioned incremental models: an incremental run replaces the whole
    partition of day D (delete, then the model's rows are appended) in one transaction, by the
    columns the model declares in meta.day_partition (macros/day_partition.sql). Deleting
    by the run's day, not by the keys of the new rows, also empties a partition whose
    recomputation has no rows.

    It first claims the model's row in meta.registry_claims (as mlpipeline.warehouse.meta.claim does for
    the registries): the pinned DuckLake lets two transactions that each delete nothing (a day
    not built yet) and then insert both commit (duckdb/ducklake#1393), so two builds of a new day
    would leave both builds' rows. With the claim, one commit is refused and that build runs again.
#}
{% macro replace_day_partition(day) -%}
    {%- if is_incremental() -%}
        {%- set columns = day_partition_columns(model) -%}
        {%- if not columns -%}
            {{ exceptions.raise_compiler_error(
                model.name ~ ": replace_day_partition needs `config: meta: day_partition:` "
                ~ "(the columns by which a row belongs to day D) in the model's YAML") }}
        {%- endif -%}
        update {{ this.database }}.meta.registry_claims set claims = claims + 1
        where registry = '{{ this.schema }}.{{ this.identifier }}';
        delete from {{ this }} where {{ day_partition_filter(columns, day) }}
    {%- endif -%}
{%- endmacro %}

{#
    before_begin hook of the same models: the row replace_day_partition claims, committed before
    the model's transaction begins (a claim made by inserting the row would conflict with nothing).
#}
{% macro claim_row() -%}
    insert into {{ this.database }}.meta.registry_claims
    select '{{ this.schema }}.{{ this.identifier }}', 0
    where not exists (
        select 1 from {{ this.database }}.meta.registry_claims
        where registry = '{{ this.schema }}.{{ this.identifier }}'
    )
{%- endmacro %}

{% macro lifetime_range_start() -%}
    {#-
        First day an incremental run of customer_lifetime recomputes, as a SQL date literal: the
        day after the last change recorded before the processing day, or none (no lower bound)
        when there is none. Read when the model compiles, so the range filters are literals the
        engine can prune row groups with.
    -#}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set query -%}
        select cast(max(cutoff_date) as varchar) from {{ this }} where cutoff_date < {{ processing_day() }}
    {%- endset -%}
    {%- set last_change = run_query(query).columns[0].values()[0] -%}
    {%- if last_change is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return("cast(" ~ dbt.dateadd('day', 1, "cast('" ~ last_change ~ "' as date)") ~ " as date)") }}
{%- endmacro %}
