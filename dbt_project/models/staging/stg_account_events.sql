with source as (

    select * from {{ source('raw', 'events') }}
    -- its event types, each row meeting the model's input assumptions
    -- (the others are in stg_quarantined_events, macros/quarantine.sql)
    where {{ ottp.meets_input_assumptions('stg_account_events') }}

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
                then cast(
                    {{ json_get_text('properties', 'marketing_opt_in') }}
                    as {{ dbt.type_boolean() }}
                )
        end as is_marketing_opt_in,

        -- timestamps
        occurred_at,
        received_at,
        landing_date,
        loaded_at

    from source

)

select * from renamed
