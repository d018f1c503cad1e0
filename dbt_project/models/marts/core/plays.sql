-- Plays with the session they started in; plays in likely-bot sessions are
-- left out with those sessions, and so are titles outside the catalog. The
-- rows are kept incrementally in int_plays_in_sessions; this is the filter
-- over them, a view, so a play whose session turns out to be a bot leaves the
-- mart as soon as that table flags it, and a title's category is the
-- catalog's current one. On Spark it is a table: readers of a Spark
-- warehouse read its Parquet files.
{{ config(materialized=('table' if target.type == 'spark' else 'view')) }}

with

plays_in_sessions as (

    select * from {{ ref('int_plays_in_sessions') }}

),

titles as (

    select * from {{ ref('int_titles') }}

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
