with source as (

    select * from {{ source('raw', 'events') }}
    where event_type in (
        'signup', 'subscribe', 'cancel', 'reactivate', 'consent_update', 'deletion_request'
    )

),

renamed as (

    select
        -- ids
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        user_id,
        device_id,

        -- event
        event_type,
        platform,
        country,
        {{ json_get_text('properties', 'plan') }} as plan_name,
        {{ json_get_text('properties', 'reason') }} as cancel_reason,

        -- booleans
        case
            when event_type = 'consent_update'
                then cast({{ json_get_text('properties', 'marketing_opt_in') }} as {{ dbt.type_boolean() }})
        end as is_marketing_opt_in,

        -- timestamps
        occurred_at,
        received_at,
        landing_date,
        loaded_at

    from source

)

select * from renamed
