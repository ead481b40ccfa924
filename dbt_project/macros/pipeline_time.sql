{#
    The pipeline's notion of time, in one place for every model and test.

    A run processes day D (var processing_day). The cutoff of day D is cutoff_ts = D+1 00:00 UTC,
    exclusive: "as of the cutoff" means strictly before it. The snapshot of cutoff D is available
    online from available_at = cutoff_ts + publication_lag_hours. Availability always follows this
    rule, never a recorded switch time, so rebuilds are reproducible.
#}

{% macro date_var(name) -%}
    {#- A YYYY-MM-DD var as a SQL date literal, or none when the var is null. -#}
    {%- set value = var(name, none) -%}
    {%- if value is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set text = value | string -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', text) -%}
        {{ exceptions.raise_compiler_error(
            "var " ~ name ~ " must be a day as YYYY-MM-DD, got '" ~ text
            ~ "'; pass e.g. --vars '{" ~ name ~ ": 2026-01-31}'") }}
    {%- endif -%}
    {{ return("cast('" ~ text ~ "' as date)") }}
{%- endmacro %}

{% macro processing_day() -%}
    {#- Day D as a SQL date expression; by default the latest dt in the current raw data. -#}
    {%- set literal = date_var('processing_day') -%}
    {%- if literal is none -%}
        (select max(dt) from {{ ref('stg_transactions') }})
    {%- else -%}
        {{ literal }}
    {%- endif -%}
{%- endmacro %}

{% macro training_cutoff() -%}
    {#- Cutoff of the training set as a SQL date expression; by default the processing day. -#}
    {%- set literal = date_var('training_cutoff') -%}
    {%- if literal is none -%}
        {{ processing_day() }}
    {%- else -%}
        {{ literal }}
    {%- endif -%}
{%- endmacro %}

{% macro cutoff_ts(day) -%}
    {#- Exclusive end of a day: midnight at the start of the next day. -#}
    cast({{ dbt.dateadd('day', 1, 'cast(' ~ day ~ ' as timestamp)') }} as timestamp)
{%- endmacro %}

{% macro available_at(cutoff_timestamp) -%}
    {#- When a cutoff's snapshot becomes available online: cutoff_ts + publication lag. -#}
    cast({{ dbt.dateadd('hour', var('publication_lag_hours'), cutoff_timestamp) }} as timestamp)
{%- endmacro %}

{% macro latest_available_cutoff(event_timestamp) -%}
    {#-
        The latest cutoff c with available_at(c) <= event_timestamp. Solving
        c + 1 day + lag <= ts for the largest day c gives c = date(ts - lag - 1 day).
    -#}
    cast({{ dbt.dateadd('day', -1, dbt.dateadd('hour', -var('publication_lag_hours'), event_timestamp)) }} as date)
{%- endmacro %}

{% macro label_horizon(day) -%}
    {#- Transactions before this timestamp have matured labels for a training cutoff. -#}
    cast({{ dbt.dateadd('day', -var('label_maturity_days'), cutoff_ts(day)) }} as timestamp)
{%- endmacro %}

{% macro training_window_start(day) -%}
    {#-
        Training rows of a cutoff are the matured transactions of the last training_window_days
        before its label horizon, so training cost follows the window, not the history. None
        when the var is null (all matured history).
    -#}
    {%- set days = var('training_window_days', none) -%}
    {%- if days is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if days is not number or days < 1 -%}
        {{ exceptions.raise_compiler_error(
            "var training_window_days must be a whole number of days >= 1 or null, got '"
            ~ days ~ "'; pass e.g. --vars '{training_window_days: 60}'") }}
    {%- endif -%}
    {{ return("cast(" ~ dbt.dateadd('day', -days, label_horizon(day)) ~ " as timestamp)") }}
{%- endmacro %}

{% macro longest_feature_window_days() -%}
    {#-
        The longest window a feature looks back over (the _30d features, chargebacks_30d
        included): a feature over the customer's whole history would grow with the calendar,
        and every monitoring reference would see it drift.
    -#}
    {{ return(30) }}
{%- endmacro %}

{% macro feature_lookback_days() -%}
    {#-
        Days of transactions before a cutoff that an incremental run reads: the longest feature
        window or the online TTL (a snapshot holds every customer active within it), whichever
        is longer.
    -#}
    {{ return([online_spec().ttl_days, longest_feature_window_days()] | max) }}
{%- endmacro %}
