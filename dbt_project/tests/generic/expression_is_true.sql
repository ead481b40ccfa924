{#- Fails with the rows where the expression is false (a null result passes, as in SQL checks). -#}
{% test expression_is_true(model, expression, column_name=none) %}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
