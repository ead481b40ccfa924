{#
    The online feature set is declared once, in models/features/customer_snapshot.yml under
    `config: meta: online:` (entity key, TTL, features with their type and default). The snapshot
    SQL, the transaction join and the Python side (mlpipeline.features.transform.online_spec) all read it
    from there, so a default or a type cannot drift between training and serving.
#}

{% macro online_spec() -%}
    {%- if not execute -%}
        {#- While parsing, dbt only collects refs and the graph does not exist yet. -#}
        {{ return({'entity_key': 'customer_id', 'ttl_days': 0, 'features': []}) }}
    {%- endif -%}
    {%- set nodes = graph.nodes.values()
        | selectattr('resource_type', 'equalto', 'model')
        | selectattr('package_name', 'equalto', 'fraud_features')
        | selectattr('name', 'equalto', 'customer_snapshot')
        | list -%}
    {%- if nodes | length != 1 -%}
        {{ exceptions.raise_compiler_error(
            "online_spec: expected one model named customer_snapshot in fraud_features, found "
            ~ nodes | length) }}
    {%- endif -%}
    {%- set spec = nodes[0].config.meta.get('online') -%}
    {%- if spec is none -%}
        {{ exceptions.raise_compiler_error(
            "online_spec: models/features/customer_snapshot.yml has no `config: meta: online:`; "
            ~ "declare entity_key, ttl_days and features there") }}
    {%- endif -%}
    {%- if spec.get('entity_key') != 'customer_id' or spec.get('ttl_days') is not integer
        or spec.get('ttl_days') < 1 or not spec.get('features') -%}
        {{ exceptions.raise_compiler_error(
            "online_spec: meta.online needs entity_key: customer_id, an integer ttl_days >= 1 and a "
            ~ "non-empty features list; got " ~ spec) }}
    {%- endif -%}
    {%- for feature in spec.features -%}
        {%- if not feature.get('name') or not feature.get('type') or 'default' not in feature -%}
            {{ exceptions.raise_compiler_error(
                "online_spec: every feature in meta.online needs name, type and default (null "
                ~ "allowed); got " ~ feature) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(spec) }}
{%- endmacro %}

{% macro online_default(feature) -%}
    {#- The declared default of one online feature as a typed SQL literal. -#}
    {%- if feature.default is none -%}
        cast(null as {{ feature.type }})
    {%- else -%}
        cast('{{ feature.default | string | replace("'", "''") }}' as {{ feature.type }})
    {%- endif -%}
{%- endmacro %}
