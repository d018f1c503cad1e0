-- Plays with the session they started in; plays in likely-bot sessions are
-- left out with those sessions.
with

plays as (

    select * from {{ ref('int_plays') }}

),

sessions as (

    select * from {{ ref('int_sessions') }}

),

titles as (

    select * from {{ ref('int_titles') }}

),

plays_in_sessions as (

    select
        plays.*,
        sessions.session_id,
        coalesce(sessions.is_likely_bot, false) as is_in_bot_session
    from plays
    left join sessions
        on
            plays.user_id = sessions.actor_id
            and plays.started_at >= sessions.started_at
            and plays.started_at <= sessions.ended_at

),

final as (

    select
        -- ids
        plays_in_sessions.playback_id,
        plays_in_sessions.session_id,
        plays_in_sessions.user_id,
        plays_in_sessions.title_id,
        plays_in_sessions.device_id,

        -- descriptive
        plays_in_sessions.platform,
        titles.category,

        -- numerics
        plays_in_sessions.duration_s,
        plays_in_sessions.played_s,
        plays_in_sessions.furthest_position_s,
        plays_in_sessions.furthest_pct,
        plays_in_sessions.last_position_s,
        plays_in_sessions.drop_off_position_s,
        plays_in_sessions.pause_count,
        plays_in_sessions.seek_count,
        plays_in_sessions.backward_seek_count,
        plays_in_sessions.rewatched_s,
        plays_in_sessions.most_rewatched_scene_s,
        plays_in_sessions.event_count,

        -- booleans
        plays_in_sessions.is_valid_play,
        plays_in_sessions.is_complete,
        plays_in_sessions.is_stopped_before_end,
        plays_in_sessions.has_reached_10_pct,
        plays_in_sessions.has_reached_25_pct,
        plays_in_sessions.has_reached_50_pct,
        plays_in_sessions.has_reached_75_pct,
        plays_in_sessions.has_reached_100_pct,
        plays_in_sessions.has_start_event,
        plays_in_sessions.has_end_event,

        -- timestamps
        plays_in_sessions.started_at,
        plays_in_sessions.ended_at,
        plays_in_sessions.play_date

    from plays_in_sessions
    -- only catalog titles: the marts' title keys all resolve
    inner join titles
        on plays_in_sessions.title_id = titles.title_id
    where not plays_in_sessions.is_in_bot_session

)

select * from final
