{#- Rebuilt for each training cutoff: labels are never frozen in an incremental table. -#}

with

transaction_features as (

    select * from {{ ref('transaction_features') }}

),

chargebacks as (

    select * from {{ ref('stg_chargebacks') }}

),

matured as (

    -- Transactions old enough that their chargeback, if any, has had time to be reported,
    -- within the training window before that horizon.
    {%- set window_start = training_window_start(training_cutoff()) %}
    select * from transaction_features
    where event_ts < {{ label_horizon(training_cutoff()) }}
    {%- if window_start is not none %}
        and event_ts >= {{ window_start }}
    {%- endif %}

),

known_chargebacks as (

    -- A chargeback reported at or after the training cutoff does not exist for it.
    select transaction_id from chargebacks
    where reported_at < {{ cutoff_ts(training_cutoff()) }}

),

labelled as (

    select
        matured.*,
        cast(case when known_chargebacks.transaction_id is null then 0 else 1 end as integer)
            as is_fraud,
        {{ training_cutoff() }} as training_cutoff

    from matured
    left join known_chargebacks
        on known_chargebacks.transaction_id = matured.transaction_id

)

select * from labelled
