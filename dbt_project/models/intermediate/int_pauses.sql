-- Pauses: one row per pause event, where it stopped the playhead and how long
-- the playback stayed paused (to the resume that follows it). Only pause and
-- resume events are read and sorted, a few percent of the player events.
{%- set scene_s = var('rewatch_scene_s') %}

with

pause_events as (

    select * from {{ ref('stg_player_events') }}
    where event_type in ('pause', 'resume')

),

-- Same-instant events in the order int_plays gives them (a resume before a
-- pause); the event id settles identical copies.
ordered as (

    select
        *,
        lead(event_type) over playback_pauses as next_event_type,
        lead(occurred_at) over playback_pauses as next_occurred_at
    from pause_events
    window playback_pauses as (
        partition by playback_id
        order by
            occurred_at,
            case when event_type = 'resume' then 0 else 1 end,
            event_id
    )

),

pauses as (

    select
        *,
        case when next_event_type = 'resume' then next_occurred_at end as resumed_at
    from ordered
    where event_type = 'pause'

),

final as (

    select
        -- ids
        event_id as pause_id,
        playback_id,
        user_id,
        title_id,
        device_id,

        -- descriptive
        platform,

        -- numerics
        position_s,
        duration_s,
        least(
            {{ ottp.safe_ratio('position_s', 'duration_s') }},
            1.0
        ) as position_pct,
        floor(position_s / {{ scene_s }}) * {{ scene_s }} as scene_start_s,
        {{ ottp.seconds_between('occurred_at', 'resumed_at') }} as paused_s,

        -- booleans
        resumed_at is not null as is_resumed,

        -- timestamps
        occurred_at as paused_at,
        resumed_at,
        cast(occurred_at as date) as paused_date,
        loaded_at

    from pauses

)

select * from final
