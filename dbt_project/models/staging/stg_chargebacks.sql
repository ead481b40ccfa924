{#-
    A table, not a view as the other staging model: raw.chargebacks_current shows a chargeback
    only while its transaction is current, a lookup in every transaction ever loaded. Built once
    a night, that lookup is paid once; its tests, customer_lifetime, training_set and monitoring
    then read the small table.
-#}
{{ config(materialized='table') }}

with

source as (

    select * from {{ source('raw', 'chargebacks_current') }}

),

cleaned as (

    select
        trim(transaction_id) as transaction_id,
        cast(reported_at as timestamp) as reported_at,
        trim(reason_code) as reason_code,
        cast(dt as date) as dt,
        batch_id,
        revision,
        source_file,
        source_row

    from source

),

ranked as (

    -- A dispute is reported once per transaction; a repeated report (re-delivery, a second
    -- stage of the same dispute) must not count twice, and the first report is when the label
    -- became known.
    select
        *,
        row_number() over (
            partition by transaction_id
            order by reported_at, dt, source_file, source_row
        ) as report_rank

    from cleaned

),

first_reports as (

    select
        transaction_id,
        reported_at,
        reason_code,
        dt,
        batch_id,
        revision,
        source_file,
        source_row

    from ranked
    where report_rank = 1

)

select * from first_reports
