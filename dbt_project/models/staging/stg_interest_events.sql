with source as (

    select * from {{ source('raw', 'events') }}
    -- its event types, each row meeting the model's input assumptions
    -- (the others are in stg_quarantined_events, macros/quarantine.sql)
    where {{ ottp.meets_input_assumptions('stg_interest_events') }}

),

renamed as (

    select
        -- ids
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        user_id,
        device_id,
        title_id,

        -- event
        event_type,
        -- a rating event's 1..5
        case
            when event_type = 'rating'
                then cast(
                    {{ ottp.number_or_null(ottp.json_get_text('properties', 'rating')) }}
                    as {{ dbt.type_int() }}
                )
        end as rating,
        {{ json_get_text('properties', 'channel') }} as share_channel,

        -- timestamps
        occurred_at,
        received_at,
        landing_date,
        loaded_at

    from source

)

select * from renamed
