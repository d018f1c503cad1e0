-- Sessions: a user's (or an anonymous device's) activity with no gap longer
-- than session_gap_minutes. Incremental: an actor's sessions from the
-- earliest one a new event can join (or bridge) are rebuilt; earlier ones are
-- kept. Rows are replaced per actor (delete+insert on actor_id), so sessions
-- merged by a late event disappear, and the table equals a full refresh.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='actor_id',
        on_schema_change='fail',
    )
}}

{%- set gap_s = var('session_gap_minutes') * 60 -%}
{%- set max_s = var('session_max_hours') * 3600 %}

with

navigation_events as (

    select
        user_id,
        device_id,
        event_id,
        platform,
        occurred_at,
        loaded_at,
        {{ ottp.flag("event_type = 'page_view'") }} as is_page_view,
        {{ ottp.flag("event_type = 'title_click'") }} as is_title_click,
        {{ ottp.flag("event_type = 'search'") }} as is_search,
        0 as is_play_start,
        0 as is_interest
    from {{ ref('stg_navigation_events') }}

),

player_events as (

    select
        user_id,
        device_id,
        event_id,
        platform,
        occurred_at,
        loaded_at,
        0 as is_page_view,
        0 as is_title_click,
        0 as is_search,
        {{ ottp.flag("event_type = 'play_start'") }} as is_play_start,
        0 as is_interest
    from {{ ref('stg_player_events') }}

),

interest_events as (

    select
        user_id,
        device_id,
        event_id,
        cast(null as {{ dbt.type_string() }}) as platform,
        occurred_at,
        loaded_at,
        0 as is_page_view,
        0 as is_title_click,
        0 as is_search,
        0 as is_play_start,
        1 as is_interest
    from {{ ref('stg_interest_events') }}

),

activity_events as (

    select
        coalesce(user_id, {{ dbt.concat(["'device:'", 'device_id']) }}) as actor_id,
        *
    from (
        select * from navigation_events
        union all
        select * from player_events
        union all
        select * from interest_events
    ) as unioned

),

{% if is_incremental() %}

previous_run as (

    select
        max(loaded_at) as loaded_at_watermark,
        {{ dbt.dateadd('day', -var('incremental_lookback_days'), 'max(ended_at)') }}
            as lookback_from
    from {{ this }}

),

-- Events loaded since the last run; older than the lookback they wait for a
-- full refresh.
new_events as (

    select
        activity_events.actor_id,
        min(activity_events.occurred_at) as first_new_at
    from activity_events
    cross join previous_run
    where
        activity_events.loaded_at > previous_run.loaded_at_watermark
        and activity_events.occurred_at >= previous_run.lookback_from
    group by activity_events.actor_id

),

-- The earliest existing session a new event can join or bridge: the first one
-- that ends at most one gap before the actor's earliest new event.
rebuild_from as (

    select
        new_events.actor_id,
        min(
            case
                when previous_sessions.started_at < new_events.first_new_at
                    then previous_sessions.started_at
                else new_events.first_new_at
            end
        ) as rebuild_from_at
    from new_events
    left join {{ this }} as previous_sessions
        on
            new_events.actor_id = previous_sessions.actor_id
            and previous_sessions.ended_at >= {{
                dbt.dateadd('second', -gap_s, 'new_events.first_new_at') }}
    group by new_events.actor_id

),

events as (

    select activity_events.*
    from activity_events
    inner join rebuild_from
        on
            activity_events.actor_id = rebuild_from.actor_id
            and activity_events.occurred_at >= rebuild_from.rebuild_from_at

),

kept_sessions as (

    select previous_sessions.*
    from {{ this }} as previous_sessions
    inner join rebuild_from
        on
            previous_sessions.actor_id = rebuild_from.actor_id
            and previous_sessions.started_at < rebuild_from.rebuild_from_at

),

{% else %}

events as (

    select * from activity_events

),

{% endif %}

-- One pass over each actor's events: neighbours and running counts, so a
-- session's totals are differences between its first and last event.
ordered as (

    select
        *,
        lag(occurred_at) over actor_events as previous_at,
        lead(occurred_at) over actor_events as next_at,
        row_number() over actor_events as event_number,
        sum(is_page_view) over actor_events as page_views_to_date,
        sum(is_title_click) over actor_events as title_clicks_to_date,
        sum(is_search) over actor_events as searches_to_date,
        sum(is_play_start) over actor_events as play_starts_to_date,
        sum(is_interest) over actor_events as interests_to_date
    from events
    window actor_events as (partition by actor_id order by occurred_at, event_id)

),

-- Only a session's first and last events are needed from here on.
boundaries as (

    select
        *,
        {{ ottp.flag(
            'previous_at is null or '
            ~ ottp.seconds_between('previous_at', 'occurred_at') ~ ' > ' ~ gap_s
        ) }} as is_session_start,
        {{ ottp.flag(
            'next_at is null or '
            ~ ottp.seconds_between('occurred_at', 'next_at') ~ ' > ' ~ gap_s
        ) }} as is_session_end
    from ordered

),

boundary_events as (

    select
        *,
        lead(occurred_at) over next_boundary as next_boundary_at,
        lead(event_number) over next_boundary as next_boundary_number,
        lead(loaded_at) over next_boundary as next_boundary_loaded_at,
        lead(page_views_to_date) over next_boundary as next_page_views_to_date,
        lead(title_clicks_to_date) over next_boundary as next_title_clicks_to_date,
        lead(searches_to_date) over next_boundary as next_searches_to_date,
        lead(play_starts_to_date) over next_boundary as next_play_starts_to_date,
        lead(interests_to_date) over next_boundary as next_interests_to_date
    from boundaries
    where is_session_start = 1 or is_session_end = 1
    window next_boundary as (partition by actor_id order by event_number)

),

-- A start is followed by its own end, unless it is a one-event session.
paired as (

    select
        *,
        case when is_session_end = 1 then occurred_at else next_boundary_at end
            as end_at,
        case when is_session_end = 1 then event_number else next_boundary_number end
            as end_number,
        case when is_session_end = 1 then loaded_at else next_boundary_loaded_at end
            as end_loaded_at,
        case
            when is_session_end = 1 then page_views_to_date
            else next_page_views_to_date
        end as end_page_views_to_date,
        case
            when is_session_end = 1 then title_clicks_to_date
            else next_title_clicks_to_date
        end as end_title_clicks_to_date,
        case
            when is_session_end = 1 then searches_to_date
            else next_searches_to_date
        end as end_searches_to_date,
        case
            when is_session_end = 1 then play_starts_to_date
            else next_play_starts_to_date
        end as end_play_starts_to_date,
        case
            when is_session_end = 1 then interests_to_date
            else next_interests_to_date
        end as end_interests_to_date
    from boundary_events
    where is_session_start = 1

),

sessions as (

    select
        -- ids
        {{ dbt.hash(dbt.concat(["'session|'", 'event_id'])) }} as session_id,
        actor_id,
        user_id,
        device_id,
        event_id as first_event_id,

        -- descriptive
        platform,

        -- counts: totals to date at the end minus those before the start
        end_number - event_number + 1 as event_count,
        end_page_views_to_date - page_views_to_date + is_page_view as page_view_count,
        end_title_clicks_to_date - title_clicks_to_date + is_title_click
            as title_click_count,
        end_searches_to_date - searches_to_date + is_search as search_count,
        end_play_starts_to_date - play_starts_to_date + is_play_start
            as play_start_count,
        end_interests_to_date - interests_to_date + is_interest as interest_event_count,

        -- numerics
        {{ ottp.seconds_between('occurred_at', 'end_at') }} as duration_s,

        -- booleans
        user_id is null as is_anonymous,
        {{ ottp.seconds_between('occurred_at', 'end_at') }} > {{ max_s }}
            as is_likely_bot,

        -- timestamps
        occurred_at as started_at,
        end_at as ended_at,
        cast(occurred_at as date) as session_date,
        -- Load time of the later of the first and last event: never above the
        -- newest load processed, so it serves as the incremental watermark.
        case when end_loaded_at > loaded_at then end_loaded_at else loaded_at end
            as loaded_at

    from paired

),

final as (

    select * from sessions

    {% if is_incremental() %}

    union all

    select
        session_id,
        actor_id,
        user_id,
        device_id,
        first_event_id,
        platform,
        event_count,
        page_view_count,
        title_click_count,
        search_count,
        play_start_count,
        interest_event_count,
        duration_s,
        is_anonymous,
        is_likely_bot,
        started_at,
        ended_at,
        session_date,
        loaded_at
    from kept_sessions

    {% endif %}

)

select * from final
