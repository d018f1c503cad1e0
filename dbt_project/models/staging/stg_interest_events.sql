with source as (

    select * from {{ source('raw', 'events') }}
    where event_type in ('like', 'dislike', 'rating', 'add_to_watchlist', 'share')

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
        cast({{ json_get_text('properties', 'rating') }} as {{ dbt.type_int() }}) as rating,
        {{ json_get_text('properties', 'channel') }} as share_channel,

        -- timestamps
        occurred_at,
        received_at,
        landing_date,
        loaded_at

    from source

)

select * from renamed
