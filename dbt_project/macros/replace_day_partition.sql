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
