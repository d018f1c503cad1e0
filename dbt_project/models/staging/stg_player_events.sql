with source as (

    select * from {{ source('raw', 'events') }}
    -- its event types, each row meeting the model's input assumptions
    -- (the others are in stg_quarantined_events, macros/quarantine.sql)
    where {{ ottp.meets_input_assumptions('stg_player_events') }}

),

renamed as (

    select
        -- ids
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        playback_id,
        user_id,
        device_id,
        title_id,

        -- event
        event_type,
        platform,

        -- numerics
        position_s,
        duration_s,
        from_position_s,

        -- timestamps
        occurred_at,
        received_at,
        landing_date,
        loaded_at

    from source

)

select * from renamed
