with

source as (

    select * from {{ source('raw', 'transactions_current') }}

),

cleaned as (

    select
        ----------  ids
        trim(transaction_id) as transaction_id,
        trim(customer_id) as customer_id,
        trim(merchant_id) as merchant_id,

        ----------  attributes (the landing contract's order)
        lower(trim(merchant_category)) as merchant_category,
        cast(amount as decimal(18, 2)) as amount,
        upper(trim(currency)) as currency,
        upper(trim(country)) as country,
        lower(trim(channel)) as channel,
        cast(event_ts as timestamp) as event_ts,

        ----------  lineage
        cast(dt as date) as dt,
        batch_id,
        revision,
        source_file,
        source_row

    from source

)

select * from cleaned
