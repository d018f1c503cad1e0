-- Plays: one row per playback_id, from its player events in occurred_at order.
-- Incremental: playbacks with events loaded since the last run (within the
-- lookback) are recomputed from all their events and replace their row.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='playback_id',
        on_schema_change='fail',
    )
}}

{%- set heartbeat_s = var('heartbeat_interval_s') -%}
{%- set scene_s = var('rewatch_scene_s') %}

with

player_events as (

    select * from {{ ref('stg_player_events') }}

),

{% if is_incremental() %}

previous_run as (

    select
        max(loaded_at) as loaded_at_watermark,
        {{ dbt.dateadd('day', -var('incremental_lookback_days'), 'max(ended_at)') }}
            as lookback_from
    from {{ this }}

),

touched_playbacks as (

    select distinct player_events.playback_id
    from player_events
    cross join previous_run
    where
        player_events.loaded_at > previous_run.loaded_at_watermark
        and player_events.occurred_at >= previous_run.lookback_from

),

events as (

    select player_events.*
    from player_events
    inner join touched_playbacks
        on player_events.playback_id = touched_playbacks.playback_id

),

{% else %}

events as (

    select * from player_events

),

{% endif %}

-- The player's state after each event decides whether the time to the next
-- event was spent playing: a pause holds until a resume (or heartbeat); a
-- seek keeps the state it found.
ordered as (

    select
        playback_id,
        user_id,
        device_id,
        title_id,
        platform,
        event_type,
        position_s,
        duration_s,
        from_position_s,
        occurred_at,
        loaded_at,
        lead(occurred_at) over playback_events as next_at,
        max(case when event_type = 'pause' then occurred_at end)
            over playback_events as last_pause_at,
        max(
            case
                when event_type in ('play_start', 'resume', 'heartbeat')
                    then occurred_at
            end
        ) over playback_events as last_playing_at
    from events
    window playback_events as (
        partition by playback_id
        order by
            occurred_at,
            -- same-instant events in the order a player emits them
            case event_type
                when 'play_start' then 1
                when 'resume' then 2
                when 'heartbeat' then 3
                when 'seek' then 4
                when 'pause' then 5
                when 'complete' then 6
                else 7
            end,
            event_id
    )

),

intervals as (

    select
        *,
        case
            when next_at is null then 0
            when event_type in ('pause', 'complete', 'stop') then 0
            when
                event_type = 'seek'
                and last_pause_at is not null
                and (last_playing_at is null or last_pause_at >= last_playing_at)
                then 0
            -- a heartbeat every heartbeat_interval_s of playback: a longer
            -- silence is not all playback
            else least(
                {{ ottp.seconds_between('occurred_at', 'next_at') }}, {{ heartbeat_s }}
            )
        end as played_s,
        -- how far playing (not seeking) took the playhead
        case when event_type = 'seek' then from_position_s else position_s end
            as reached_position_s
    from ordered

),

playbacks as (

    select
        playback_id,
        min(user_id) as user_id,
        min(device_id) as device_id,
        min(title_id) as title_id,
        min(platform) as platform,
        max(duration_s) as duration_s,
        sum(played_s) as played_s,
        max(reached_position_s) as furthest_position_s,
        max(case when next_at is null then position_s end) as last_position_s,
        count(*) as event_count,
        sum({{ ottp.flag("event_type = 'pause'") }}) as pause_count,
        sum({{ ottp.flag("event_type = 'seek'") }}) as seek_count,
        sum({{ ottp.flag("event_type = 'seek' and position_s < from_position_s") }})
            as backward_seek_count,
        max({{ ottp.flag("event_type = 'play_start'") }}) as has_start_event,
        max({{ ottp.flag("event_type = 'complete'") }}) as has_complete_event,
        max({{ ottp.flag("event_type in ('complete', 'stop')") }}) as has_end_event,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        max(loaded_at) as loaded_at
    from intervals
    group by playback_id

),

-- A backward seek re-watches the skipped-back span as far as playing then
-- takes the playhead: up to the next seek, or to the last position.
backward_seeks as (

    select
        playback_id,
        position_s,
        from_position_s,
        lead(from_position_s) over (
            partition by playback_id order by occurred_at, event_id
        ) as next_seek_from_s
    from events
    where event_type = 'seek'

),

rewatches as (

    select
        backward_seeks.playback_id,
        floor(backward_seeks.position_s / {{ scene_s }}) * {{ scene_s }} as scene_start_s,
        least(
            backward_seeks.from_position_s - backward_seeks.position_s,
            greatest(
                coalesce(backward_seeks.next_seek_from_s, playbacks.last_position_s)
                - backward_seeks.position_s,
                0
            )
        ) as rewatched_s
    from backward_seeks
    inner join playbacks
        on backward_seeks.playback_id = playbacks.playback_id
    where backward_seeks.position_s < backward_seeks.from_position_s

),

ranked_rewatches as (

    select
        playback_id,
        scene_start_s,
        sum(rewatched_s) over (partition by playback_id) as total_rewatched_s,
        row_number() over (
            partition by playback_id order by rewatched_s desc, scene_start_s
        ) as rewatch_rank
    from rewatches

),

completion as (

    select
        *,
        (
            has_complete_event = 1
            or furthest_position_s >= {{ var('complete_min_pct') }} * duration_s
        ) as is_complete
    from playbacks

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
