{#-
    Every online feature declared with a non-null default (counts, sums) is non-null in every
    row: the online store never returns null for it, so the tables must not either. The list
    comes from meta.online, so a new feature is covered without editing this test.
-#}
{% test online_features_have_values(model) %}

{%- set null_checks = [] -%}
{%- for feature in online_spec().features if feature.default is not none -%}
    {%- do null_checks.append(feature.name ~ ' is null') -%}
{%- endfor %}

select *
from {{ model }}
where {{ null_checks | join(' or ') if null_checks else 'false' }}

{% endtest %}
