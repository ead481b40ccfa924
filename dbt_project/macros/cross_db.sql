{#
    Engine-specific syntax lives behind these dispatched macros, so pointing the profile at another
    engine (Spark, Trino, ...) means adding one "<adapter>__" implementation here, not rewriting
    the models.
#}

{% macro day_series(first_day, last_day) -%}
    {#- One row per day from first_day to last_day inclusive, column `calendar_day` (DATE). -#}
    {{ return(adapter.dispatch('day_series', 'fraud_features')(first_day, last_day)) }}
{%- endmacro %}

{% macro duckdb__day_series(first_day, last_day) -%}
    select cast(generate_series as date) as calendar_day
    from generate_series(cast({{ first_day }} as date), cast({{ last_day }} as date), interval 1 day)
{%- endmacro %}

{% macro default__day_series(first_day, last_day) -%}
    {{ exceptions.raise_compiler_error(
        "day_series has no implementation for the '" ~ adapter.type() ~ "' adapter; add a macro "
        ~ adapter.type() ~ "__day_series(first_day, last_day) to macros/cross_db.sql") }}
{%- endmacro %}

{% macro number_series(first, last) -%}
    {#- One row per integer from first to last inclusive, column `n` (INTEGER). -#}
    {{ return(adapter.dispatch('number_series', 'fraud_features')(first, last)) }}
{%- endmacro %}

{% macro duckdb__number_series(first, last) -%}
    select cast(generate_series as integer) as n
    from generate_series({{ first }}, {{ last }})
{%- endmacro %}

{% macro default__number_series(first, last) -%}
    {{ exceptions.raise_compiler_error(
        "number_series has no implementation for the '" ~ adapter.type() ~ "' adapter; add a "
        ~ "macro " ~ adapter.type() ~ "__number_series(first, last) to macros/cross_db.sql") }}
{%- endmacro %}
