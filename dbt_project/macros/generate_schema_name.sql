{#
    Models write to exactly the schema they are configured with (staging, features, marts), not
    dbt's default "<target schema>_<custom schema>": the pipeline and the analysts read these
    names directly.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
