-- Every training row has matured: its event is at least label_maturity_days before the training
-- cutoff, so its label had time to arrive.
with

training_rows as (

    select * from {{ ref('training_set') }}

)

select
    transaction_id,
    event_ts,
    training_cutoff

from training_rows
where event_ts >= {{ label_horizon('training_cutoff') }}
