with source as (

    select * from {{ source('raw', 'events') }}
    where event_type in (
        'play_start', 'heartbeat', 'pause', 'resume', 'seek', 'complete', 'stop'
    )

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
