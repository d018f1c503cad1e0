-- Sessions: a user's (or an anonymous device's) activity with no gap longer
-- than session_gap_minutes. Incremental: an actor's sessions from the
-- earliest one a new event can join (or bridge) are rebuilt; earlier ones are
-- kept. Rows are replaced per actor (delete+insert on actor_id), so sessions
-- merged by a late event disappear, and the table equals a full refresh.
-- Sessions longer than session_max_hours (20: the contract's accounts playing
-- non-stop for 20+ hours; binge-watchers stay under it), or with more page
-- views an hour than session_max_page_views_per_hour over 10 minutes at least
-- (scrapers), are flagged as likely bots.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='actor_id',
        on_schema_change='fail',
        tags=['landing_day'],
        pre_hook="{{ ottp.disable_shared_subplans() }}",
        post_hook="{{ ottp.restore_shared_subplans() }}",
    )
}}

{%- set gap_s = var('session_gap_minutes') * 60 -%}
{%- set max_s = var('session_max_hours') * 3600 %}

-- Every CTE over events is inlined where the engine allows it: re-reading the
-- (filtered) views is cheaper than storing millions of rows.
with

navigation_events as {{ ottp.inline_cte() }} (

    select
        user_id,
        device_id,
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

player_events as {{ ottp.inline_cte() }} (

    select
        user_id,
        device_id,
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

interest_events as {{ ottp.inline_cte() }} (

    select
        user_id,
        device_id,
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

activity_events as {{ ottp.inline_cte() }} (

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

-- previous_run, new_events: actors with events loaded since the last run
-- (within the lookback) or on the days a backfill asks for
{{ ottp.incremental_new_events('activity_events', 'actor_id') }},

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
                ottp.shift_timestamp('second', -gap_s, 'new_events.first_new_at') }}
    group by new_events.actor_id

),

events as (

    select activity_events.*
    from activity_events
    inner join rebuild_from
        on
            activity_events.actor_id = rebuild_from.actor_id
            and activity_events.occurred_at >= rebuild_from.rebuild_from_at
    -- the same bound for every actor lets the scan skip older row groups
    where
        activity_events.occurred_at
        >= (select min(rebuilt.rebuild_from_at) from rebuild_from as rebuilt)

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

-- Events first collapse into buckets one gap wide. Two events in one bucket
-- are less than a gap apart, so no session starts inside a bucket, and the
-- gap between two buckets is the gap between their outer events: sessions of
-- buckets are exactly sessions of events, for a fraction of the rows to sort.
buckets as (

    select
        actor_id,
        floor({{ ottp.epoch_s('occurred_at') }} / {{ gap_s }}) as bucket,
        min(user_id) as user_id,
        {{ ottp.first_by('device_id', ['occurred_at', 'device_id']) }} as device_id,
        {{ ottp.first_by('platform', ['occurred_at', 'platform']) }} as platform,
        min(occurred_at) as first_at,
        max(occurred_at) as last_at,
        max(loaded_at) as loaded_at,
        count(*) as event_count,
        sum(is_page_view) as page_view_count,
        sum(is_title_click) as title_click_count,
        sum(is_search) as search_count,
        sum(is_play_start) as play_start_count,
        sum(is_interest) as interest_event_count
    from events
    group by actor_id, floor({{ ottp.epoch_s('occurred_at') }} / {{ gap_s }})

),

bucket_starts as (

    select
        *,
        {{ ottp.flag(
            'previous_last_at is null or '
            ~ ottp.seconds_between('previous_last_at', 'first_at') ~ ' > ' ~ gap_s
        ) }} as is_session_start
    from (
        select
            *,
            lag(last_at) over (partition by actor_id order by first_at) as previous_last_at
        from buckets
    ) as with_previous

),

numbered as (

    select
        *,
        sum(is_session_start) over (
            partition by actor_id
            order by first_at
            rows between unbounded preceding and current row
        ) as session_number
    from bucket_starts

),

grouped as (

    select
        actor_id,
        min(user_id) as user_id,
        {{ ottp.first_by('device_id', ['first_at']) }} as device_id,
        {{ ottp.first_by('platform', ['first_at']) }} as platform,
        min(first_at) as started_at,
        max(last_at) as ended_at,
        max(loaded_at) as loaded_at,
        sum(event_count) as event_count,
        sum(page_view_count) as page_view_count,
        sum(title_click_count) as title_click_count,
        sum(search_count) as search_count,
        sum(play_start_count) as play_start_count,
        sum(interest_event_count) as interest_event_count
    from numbered
    group by actor_id, session_number

),

sessions as (

    select
        -- ids
        {{ dbt.hash(dbt.concat([
            'actor_id', "'|'",
            'cast(' ~ ottp.epoch_us('started_at') ~ ' as ' ~ dbt.type_string() ~ ')'
        ])) }} as session_id,
        actor_id,
        user_id,
        device_id,

        -- descriptive
        platform,

        -- counts
        event_count,
        page_view_count,
        title_click_count,
        search_count,
        play_start_count,
        interest_event_count,

        -- numerics
        {{ ottp.seconds_between('started_at', 'ended_at') }} as duration_s,

        -- booleans
        user_id is null as is_anonymous,
        (
            {{ ottp.seconds_between('started_at', 'ended_at') }} > {{ max_s }}
            -- scrapers: more page views than a person reads, over 10 minutes at least
            or page_view_count
            > {{ var('session_max_page_views_per_hour') }} / 3600.0 * greatest(
                {{ ottp.seconds_between('started_at', 'ended_at') }}, 600
            )
        ) as is_likely_bot,

        -- timestamps
        started_at,
        ended_at,
        cast(started_at as date) as session_date,
        -- latest load among the session's events; the maximum over the table
        -- is the watermark of the next incremental run
        loaded_at

    from grouped

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
