-- Which user each device belongs to: one row per device and user, from the
-- identify calls the collector stored (raw.identities, macro identities) and
-- from the plays (a play carries both the user and the device). Nothing is
-- re-attributed: a device's anonymous sessions before its identify stay
-- anonymous in sessions; this table only records the link.
with

identified as (

    select
        device_id,
        user_id,
        min(identified_at) as first_identified_at,
        max(identified_at) as last_identified_at,
        count(*) as identify_count
    from ({{ ottp.identities() }}) as identities
    group by device_id, user_id

),

played as (

    select
        device_id,
        user_id,
        min(started_at) as first_played_at,
        max(started_at) as last_played_at,
        count(*) as play_count
    from {{ ref('plays') }}
    where device_id is not null and user_id is not null
    group by device_id, user_id

),

final as (

    select
        -- ids
        coalesce(identified.device_id, played.device_id) as device_id,
        coalesce(identified.user_id, played.user_id) as user_id,

        -- numerics
        coalesce(identified.identify_count, 0) as identify_count,
        coalesce(played.play_count, 0) as play_count,

        -- timestamps
        identified.first_identified_at,
        identified.last_identified_at,
        played.first_played_at,
        played.last_played_at,
        case
            when played.first_played_at is null then identified.first_identified_at
            when identified.first_identified_at is null then played.first_played_at
            when identified.first_identified_at < played.first_played_at
                then identified.first_identified_at
            else played.first_played_at
        end as first_seen_at,
        case
            when played.last_played_at is null then identified.last_identified_at
            when identified.last_identified_at is null then played.last_played_at
            when identified.last_identified_at > played.last_played_at
                then identified.last_identified_at
            else played.last_played_at
        end as last_seen_at

    from identified
    full outer join played
        on
            identified.device_id = played.device_id
            and identified.user_id = played.user_id

)

select * from final
