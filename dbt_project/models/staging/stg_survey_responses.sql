with source as (

    select * from {{ source('raw', 'events') }}
    where event_type = 'survey_response'

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
