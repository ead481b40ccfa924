{#
    customer_snapshot is built from ephemeral intermediate models (models/intermediate/), which
    dbt compiles as themselves: their own `this` is never a table, so is_incremental() is always
    false there. They ask this macro instead.
#}

{% macro snapshot_is_incremental() -%}
    {#-
        is_incremental() of customer_snapshot: true when it exists as a table and this run does
        not fully refresh it. Then the build computes the processing day's cutoff alone (the
        nightly); otherwise every cutoff from the first raw day (first build, --full-refresh).
    -#}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set node = graph.nodes['model.fraud_features.customer_snapshot'] -%}
    {%- set relation = adapter.get_relation(node.database, node.schema, node.alias) -%}
    {%- set full_refresh = node.config.full_refresh
        if node.config.full_refresh is not none else flags.FULL_REFRESH -%}
    {{ return(relation is not none and relation.type == 'table' and not full_refresh) }}
{%- endmacro %}
