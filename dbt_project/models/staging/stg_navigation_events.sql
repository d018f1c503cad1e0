with source as (

    select * from {{ source('raw', 'events') }}
    -- its event types, each row meeting the model's input assumptions
    -- (the others are in stg_quarantined_events, macros/quarantine.sql)
    where {{ ottp.meets_input_assumptions('stg_navigation_events') }}

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
        platform,
        country,
        app_version,
        {{ json_get_text('properties', 'page') }} as page_name,
        {{ json_get_text('properties', 'rail') }} as rail_name,
        cast(
            {{ ottp.number_or_null(ottp.json_get_text('properties', 'rank')) }}
            as {{ dbt.type_int() }}
        ) as rail_rank,
        {{ json_get_text('properties', 'query') }} as search_query,

        -- booleans
        user_id is null as is_anonymous,

        -- timestamps
        occurred_at,
        received_at,
        landing_date,
        loaded_at

    from source

)

select * from renamed
