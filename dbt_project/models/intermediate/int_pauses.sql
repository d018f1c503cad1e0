-- Pauses: one row per pause event, where it stopped the playhead and how long
-- the playback stayed paused (to the resume that follows it). Only pause and
-- resume events are read and sorted, a few percent of the player events.
-- Incremental on playback_id, in step with int_plays: a playback's pauses are
-- recomputed from all its pause and resume events when int_plays rebuilt its
-- row since the last run (or it has such events on a backfill's days). Pause
-- events only accumulate, so a recomputed playback has every row it had.
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
{%- set scene_s = var('rewatch_scene_s') %}

-- depends_on: {{ ref('int_plays') }}

with

all_pause_events as {{ ottp.inline_cte() }} (

    select * from {{ ref('stg_player_events') }}
    where event_type in ('pause', 'resume')

),

{% if is_incremental() %}

-- The latest load among the stored pauses. Playbacks without pauses are not
-- in this table, so it can lag int_plays' watermark: a lag recomputes a few
-- more playbacks, never fewer.
previous_run as (

    select coalesce(max(loaded_at), {{ ottp.epoch_start() }}) as loaded_at_watermark
    from {{ this }}

),

plays as (

    select * from {{ ref('int_plays') }}

),

touched_playbacks as (

    select plays.playback_id
    from plays
    cross join previous_run
    where plays.loaded_at > previous_run.loaded_at_watermark

    union

    -- int_plays rebuilt these too in this run (it runs first)
    select all_pause_events.playback_id
    from all_pause_events
    where {{ ottp.partition_window('all_pause_events.occurred_at') }}

),

-- A playback's first event is its start in int_plays, which recomputed it
-- from all its events.
first_touched_start as (

    select min(plays.started_at) as started_at
    from plays
    inner join touched_playbacks
        on plays.playback_id = touched_playbacks.playback_id

),

pause_events as (

    select all_pause_events.*
    from all_pause_events
    inner join touched_playbacks
        on all_pause_events.playback_id = touched_playbacks.playback_id
    -- one bound for every playback lets the scan skip older row groups
    where
        all_pause_events.occurred_at
        >= (select first_touched_start.started_at from first_touched_start)

),

{% else %}

pause_events as (

    select * from all_pause_events

),

{% endif %}

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
