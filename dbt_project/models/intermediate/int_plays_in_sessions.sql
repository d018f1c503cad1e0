-- Every play with the session it started in and whether that session is a
-- likely bot: the rows of the plays mart, bots included, so a play whose
-- session turns out to be a bot (a late event makes it longer than
-- session_max_hours) is updated in place, never left behind. The mart is a
-- filter over it (marts/core/plays.sql).
-- Incremental on playback_id: a play is recomputed when its own row in
-- int_plays was rebuilt since the last run (loaded_at), when a session that
-- may hold it was rebuilt (session_loaded_at), or when it started on the days
-- a backfill asks for. Rows never disappear from int_plays, so none disappear
-- here, and the table equals a full refresh.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='playback_id',
        on_schema_change='fail',
        tags=['landing_day'],
        pre_hook="{{ ottp.disable_shared_subplans() }}",
        post_hook="{{ ottp.restore_shared_subplans() }}",
    )
}}

with

plays as {{ ottp.inline_cte() }} (

    select * from {{ ref('int_plays') }}

),

sessions as {{ ottp.inline_cte() }} (

    select * from {{ ref('int_sessions') }}

),

{% if is_incremental() %}

-- The latest play and session loads already joined. Both are maxima over
-- this table only (sessions without plays are not in it), so they can lag
-- the true watermark: a lag re-joins a few more plays, never fewer.
previous_run as (

    select
        coalesce(max(loaded_at), {{ ottp.epoch_start() }}) as play_watermark,
        coalesce(max(session_loaded_at), {{ ottp.epoch_start() }}) as session_watermark
    from {{ this }}

),

-- Sessions rebuilt since then (a new event joined, extended, merged or
-- flagged them) or on a backfill's days: every play in one may change session.
changed_sessions as (

    select
        sessions.actor_id,
        sessions.started_at,
        sessions.ended_at
    from sessions
    cross join previous_run
    where
        sessions.loaded_at > previous_run.session_watermark
        or {{ ottp.partition_window('sessions.started_at') }}
        or {{ ottp.partition_window('sessions.ended_at') }}

),

touched_playbacks as (

    select plays.playback_id
    from plays
    cross join previous_run
    where
        plays.loaded_at > previous_run.play_watermark
        or {{ ottp.partition_window('plays.started_at') }}

    union

    select plays.playback_id
    from plays
    inner join changed_sessions
        on
            plays.user_id = changed_sessions.actor_id
            and plays.started_at >= changed_sessions.started_at
            and plays.started_at <= changed_sessions.ended_at
    -- one bound for every session lets the scan skip older row groups
    where plays.started_at >= (select min(changed.started_at) from changed_sessions as changed)

),

batch_plays as (

    select plays.*
    from plays
    inner join touched_playbacks
        on plays.playback_id = touched_playbacks.playback_id

),

candidate_sessions as (

    select sessions.*
    from sessions
    where sessions.ended_at >= (select min(batch.started_at) from batch_plays as batch)

),

{% else %}

batch_plays as (

    select * from plays

),

candidate_sessions as (

    select * from sessions

),

{% endif %}

final as (

    select
        batch_plays.*,
        candidate_sessions.session_id,
        coalesce(candidate_sessions.is_likely_bot, false) as is_in_bot_session,
        -- the session's latest load; its maximum is the next run's session watermark
        candidate_sessions.loaded_at as session_loaded_at
    from batch_plays
    -- sessions of one actor never overlap: at most one holds the play's start
    left join candidate_sessions
        on
            batch_plays.user_id = candidate_sessions.actor_id
            and batch_plays.started_at >= candidate_sessions.started_at
            and batch_plays.started_at <= candidate_sessions.ended_at

)

select * from final
