{#
    Pre-hook of the day-partitioned incremental models: an incremental run replaces the whole
    partition of day D (delete, then the model's rows are appended). Deleting by the run's day,
    not by the keys of the new rows, also empties a partition whose recomputation has no rows.
#}
{% macro replace_day_partition(column, day) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ column }} = {{ day }}
    {%- endif -%}
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
