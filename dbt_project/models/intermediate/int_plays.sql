-- Plays: one row per playback_id, from its player events in occurred_at order.
-- Incremental: playbacks with events loaded since the last run (within the
-- lookback), or with events on the days a backfill asks for, are recomputed
-- from all their events and replace their row.
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

with

-- read several times; re-reading the (filtered) view is cheaper than
-- storing every event
player_events as {{ ottp.inline_cte() }} (

    select * from {{ ref('stg_player_events') }}

),

{% if is_incremental() %}

-- previous_run, new_events: playbacks with events loaded since the last run
-- (within the lookback) or on the days a backfill asks for
{{ ottp.incremental_new_events('player_events', 'playback_id') }},

-- Playbacks to recompute, from their first event (stored or new).
touched_playbacks as (

    select
        new_events.playback_id,
        case
            when previous_plays.started_at < new_events.first_new_at
                then previous_plays.started_at
            else new_events.first_new_at
        end as first_event_at
    from new_events
    left join {{ this }} as previous_plays
        on new_events.playback_id = previous_plays.playback_id

),

events as (

    select player_events.*
    from player_events
    inner join touched_playbacks
        on player_events.playback_id = touched_playbacks.playback_id
    -- one bound for every playback lets the scan skip older row groups
    where
        player_events.occurred_at
        >= (select min(touched.first_event_at) from touched_playbacks as touched)

),

{% else %}

events as {{ ottp.inline_cte() }} (

    select * from player_events

),

{% endif %}

-- Events with a code that orders same-instant events as a player emits them.
coded_events as {{ ottp.inline_cte() }} (

    select
        *,
        case event_type
            when 'play_start' then 1
            when 'resume' then 2
            when 'heartbeat' then 3
            when 'seek' then 4
            when 'pause' then 5
            when 'complete' then 6
            else 7
        end as event_code,
        -- how far playing (not seeking) took the playhead
        case when event_type = 'seek' then from_position_s else position_s end
            as reached_position_s
    from events

),

-- Everything that needs no event order: one pass, no sort.
playbacks as (

    select
        playback_id,
        min(user_id) as user_id,
        min(device_id) as device_id,
        min(title_id) as title_id,
        min(platform) as platform,
        max(duration_s) as duration_s,
        max(reached_position_s) as furthest_position_s,
        {{ ottp.last_by('position_s', ['occurred_at', 'event_code', 'position_s']) }}
            as last_position_s,
        count(*) as event_count,
        sum({{ ottp.flag('event_code = 3') }}) as heartbeat_count,
        sum({{ ottp.flag('event_code = 5') }}) as pause_count,
        sum({{ ottp.flag('event_code = 4') }}) as seek_count,
        sum({{ ottp.flag('event_code = 4 and position_s < from_position_s') }})
            as backward_seek_count,
        max({{ ottp.flag('event_code = 1') }}) as has_start_event,
        max({{ ottp.flag('event_code = 6') }}) as has_complete_event,
        max({{ ottp.flag('event_code >= 6') }}) as has_end_event,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        max(loaded_at) as loaded_at,
        -- a playback that opens with a heartbeat lost its play_start
        min(case when event_code <> 3 then occurred_at end) as first_change_at,
        {{ ottp.first_by('position_s', ['occurred_at', 'event_code', 'position_s']) }}
            as first_position_s
    from coded_events
    group by playback_id

),

-- Play time. Heartbeats come every heartbeat_interval_s of playback and carry
-- the position, so between two state changes (play_start, resume, seek, pause,
-- complete, stop, or the last event) the time played is how far the playhead
-- moved: a lost heartbeat changes nothing, and a silence without a pause (an
-- app sent to the background) does not count as playing. Only the state
-- changes need ordering, a few percent of the events.
state_changes as (

    select
        playback_id,
        occurred_at,
        event_code,
        position_s,
        reached_position_s
    from coded_events
    where event_code <> 3

    union all

    -- heartbeats come only while playing: a playback that opens with one (its
    -- play_start lost) is playing from there; before its first event nothing
    -- is known, and nothing counts
    select
        playback_id,
        started_at as occurred_at,
        3 as event_code,
        first_position_s as position_s,
        first_position_s as reached_position_s
    from playbacks
    where first_change_at is null or first_change_at > started_at

    union all

    -- the last event closes the last stretch (code 9 sorts after the rest)
    select
        playback_id,
        ended_at as occurred_at,
        9 as event_code,
        last_position_s as position_s,
        last_position_s as reached_position_s
    from playbacks

),

stretches as (

    select
        playback_id,
        occurred_at,
        event_code,
        position_s,
        lead(event_code) over playback_changes as next_code,
        lead(occurred_at) over playback_changes as next_at,
        lead(reached_position_s) over playback_changes as next_reached_position_s
    from state_changes
    window playback_changes as (
        -- identical events (one resent under another id) give the same
        -- result in either order
        partition by playback_id
        order by occurred_at, event_code, position_s
    )

),

-- A stretch counts how far the playhead moved, within its wall-clock time:
-- paused, the playhead stays put and nothing counts. A stretch that ends at a
-- resume was paused (a seek before a resume was made while paused), so a
-- position change there is a seek, never play. Any other stretch that moved
-- the playhead was playing, whatever state its start left: after a pause, a
-- later heartbeat, complete, stop or seek further on shows a resume was lost.
play_time as (

    select
        playback_id,
        sum(
            case
                when next_at is null then 0
                when next_code = 2 and event_code >= 4 then 0
                else greatest(
                    least(
                        next_reached_position_s - position_s,
                        {{ ottp.seconds_between('occurred_at', 'next_at') }}
                    ),
                    0
                )
            end
        ) as played_s
    from stretches
    group by playback_id

),

-- A backward seek re-watches the skipped-back span as far as playing then
-- takes the playhead: up to the next seek, or to the last position.
seeks as (

    select
        playback_id,
        position_s,
        from_position_s,
        lead(from_position_s) over (
            partition by playback_id
            order by occurred_at, from_position_s, position_s
        ) as next_seek_from_s
    from events
    where event_type = 'seek'

),

rewatches as (

    select
        seeks.playback_id,
        floor(seeks.position_s / {{ scene_s }}) * {{ scene_s }} as scene_start_s,
        least(
            seeks.from_position_s - seeks.position_s,
            greatest(
                coalesce(seeks.next_seek_from_s, playbacks.last_position_s)
                - seeks.position_s,
                0
            )
        ) as rewatched_s
    from seeks
    inner join playbacks
        on seeks.playback_id = playbacks.playback_id
    where seeks.position_s < seeks.from_position_s

),

ranked_rewatches as (

    select
        playback_id,
        scene_start_s,
        sum(rewatched_s) over (partition by playback_id) as total_rewatched_s,
        row_number() over (
            partition by playback_id order by rewatched_s desc, scene_start_s asc
        ) as rewatch_rank
    from rewatches

),

completion as (

    select
        playbacks.*,
        play_time.played_s,
        (
            playbacks.has_complete_event = 1
            or playbacks.furthest_position_s
            >= {{ var('complete_min_pct') }} * playbacks.duration_s
        ) as is_complete
    from playbacks
    inner join play_time
        on playbacks.playback_id = play_time.playback_id

),

final as (

    select
        -- ids
        completion.playback_id,
        completion.user_id,
        completion.title_id,
        completion.device_id,

        -- descriptive
        completion.platform,

        -- numerics
        completion.duration_s,
        completion.played_s,
        completion.furthest_position_s,
        least(
            {{ ottp.safe_ratio('completion.furthest_position_s', 'completion.duration_s') }},
            1.0
        ) as furthest_pct,
        completion.last_position_s,
        case when not completion.is_complete then completion.last_position_s end
            as drop_off_position_s,
        completion.event_count,
        -- heartbeats the play time calls for that never arrived
        greatest(
            floor(completion.played_s / {{ var('heartbeat_interval_s') }})
            - completion.heartbeat_count,
            0
        ) as missing_heartbeat_count,
        completion.pause_count,
        completion.seek_count,
        completion.backward_seek_count,
        coalesce(ranked_rewatches.total_rewatched_s, 0) as rewatched_s,
        case
            when ranked_rewatches.total_rewatched_s > 0
                then ranked_rewatches.scene_start_s
        end as most_rewatched_scene_s,

        -- booleans
        completion.played_s >= {{ var('valid_play_min_s') }} as is_valid_play,
        completion.is_complete,
        not completion.is_complete as is_stopped_before_end,
        {%- for pct in [10, 25, 50, 75] %}
        completion.furthest_position_s >= {{ pct / 100 }} * completion.duration_s
            as has_reached_{{ pct }}_pct,
        {%- endfor %}
        (
            completion.has_complete_event = 1
            or completion.furthest_position_s >= completion.duration_s
        ) as has_reached_100_pct,
        completion.has_start_event = 1 as has_start_event,
        completion.has_complete_event = 1 as has_complete_event,
        completion.has_end_event = 1 as has_end_event,

        -- timestamps
        completion.started_at,
        completion.ended_at,
        cast(completion.started_at as date) as play_date,
        completion.loaded_at

    from completion
    left join ranked_rewatches
        on
            completion.playback_id = ranked_rewatches.playback_id
            and ranked_rewatches.rewatch_rank = 1

)

select * from final
