{#
    A day-partitioned model declares once, in its YAML (`config: meta: day_partition:`), the
    columns by which a row belongs to day D (a row belongs to D when any of them is D). Two things
    read it: the pre-hook that replaces D's rows on an incremental run (replace_day_partition),
    and the tests, which judge the rows a run for D built, not every day of history, so a night's
    test cost follows the day and one bad value of an old day cannot stop every later night
    (the raw checks and `mlpipeline batches supersede` deal with it). Without the var
    processing_day, tests judge every day.
#}

{% macro day_partition_columns(node) -%}
    {#- The declared day columns of a model node (graph or `model`), as a list; [] if none. -#}
    {%- set columns = node.config.meta.get('day_partition', []) -%}
    {{ return([columns] if columns is string else columns) }}
{%- endmacro %}

{% macro day_partition_filter(columns, day) -%}
    {#- SQL condition: the row belongs to `day` by any of `columns`. -#}
    ({%- for column in columns %}{{ column }} = {{ day }}{{ " or " if not loop.last }}{% endfor -%})
{%- endmacro %}

{% macro built_rows_condition(node) -%}
    {#-
        The rows of a model node (graph or `model`) that a run for processing_day built, as a
        SQL condition; none when every row counts (no processing_day, or no declared day
        partition).
    -#}
    {%- set columns = day_partition_columns(node) -%}
    {%- set day = date_var('processing_day') -%}
    {{ return(day_partition_filter(columns, day) if columns and day is not none else none) }}
{%- endmacro %}

{% macro built_rows_filter(model_name) -%}
    {#- built_rows_condition of `model_name`, for a singular test's where clause ('true' when
        every row counts). -#}
    {%- if not execute -%}
        {{ return('true') }}
    {%- endif -%}
    {%- set node = graph.nodes.values()
        | selectattr('resource_type', 'equalto', 'model')
        | selectattr('package_name', 'equalto', project_name)
        | selectattr('name', 'equalto', model_name)
        | first -%}
    {{ return(built_rows_condition(node) or 'true') }}
{%- endmacro %}

{#
    dbt's hook for a generic test's `where` (the documented way to give it project logic): a test
    on a model with a day partition judges the rows built for processing_day; an explicit `where`
    config still wins.
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set attached = model.get('attached_node') if execute else none -%}
    {%- if not where and attached and attached in graph.nodes -%}
        {%- set where = built_rows_condition(graph.nodes[attached]) -%}
    {%- endif -%}
    {%- if where -%}
        {{ return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}
