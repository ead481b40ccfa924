{#
    Source freshness against the processing day, not the wall clock: `dbt source freshness` with
    var processing_day = D measures the age of the newest row before cutoff_ts(D) at cutoff_ts(D),
    so a backfill of an old day or a re-run days later judges D's data as the nightly would have.
    Without processing_day it measures against the current time, as dbt does by default. The
    sources declare warn_after only: freshness warns and never stops a run.

    dbt dispatches collect_freshness to the root project first, so this replaces dbt's
    default__collect_freshness for every adapter.
#}

{% macro default__collect_freshness(source, loaded_at_field, filter) %}
    {%- set day = date_var('processing_day') -%}
    {%- call statement('collect_freshness', fetch_result=True, auto_begin=False) -%}
        select
            max({{ loaded_at_field }}) as max_loaded_at,
            {% if day is none -%}
            {{ current_timestamp() }}
            {%- else -%}
            {{ cutoff_ts(day) }}
            {%- endif %} as snapshotted_at
        from {{ source }}
        where {{ 'true' if day is none else loaded_at_field ~ ' < ' ~ cutoff_ts(day) }}
        {%- if filter %}
            and ({{ filter }})
        {%- endif %}
    {%- endcall -%}
    {{ return(load_result('collect_freshness')) }}
{% endmacro %}
