with source as (

    select * from {{ source('raw', 'events') }}
    -- its event types, each row meeting the model's input assumptions
    -- (the others are in stg_quarantined_events, macros/quarantine.sql)
    where {{ ottp.meets_input_assumptions('stg_survey_responses') }}

),

renamed as (

    select
        -- ids
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        user_id,
        device_id,
        {{ json_get_text('properties', 'survey_id') }} as survey_id,
        {{ json_get_text('properties', 'question_id') }} as question_id,

        -- answer
        {{ json_get_text('properties', 'answer') }} as answer,

        -- timestamps
        occurred_at,
        received_at,
        landing_date,
        loaded_at

    from source

)

select * from renamed
