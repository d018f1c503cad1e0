-- Engagement per title and day (the rows of the title_engagement_daily
-- mart), kept incrementally a day at a time: plays by the day they started,
-- expressed interests by the day the user's current reaction or rating was
-- given.
-- Each day also has one day row (title_id null) holding the fingerprints of
-- what that day's rows were computed from: the sum of a hash of every play
-- the plays mart holds for that day (its id, title and the load times of the
-- play and of its session: a play's pauses and metrics change only when it
-- is rebuilt from a newer load), and of the title and value of every current
-- reaction and rating given that day (macros/portability.sql, hash_sum).
-- An incremental run recomputes every title of each day whose fingerprints
-- changed, and only those days. So a late event, a play whose session turned
-- out to be a bot, a title leaving or joining the catalog, a reaction
-- replaced on another day and a backfill that takes in events past the
-- lookback reach the days they change, old and new, with no watermark. A
-- rule changed upstream (same loads, new values) needs a full refresh. A day
-- left with nothing keeps a day row without fingerprints (it deletes the
-- day's old rows); the mart leaves day rows out.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='activity_date',
        on_schema_change='fail',
    )
}}
{%- set scene_s = var('rewatch_scene_s') %}

with

plays as (

    select * from {{ ref('plays') }}

),

pauses as (

    select * from {{ ref('pauses') }}

),

interests as (

    select * from {{ ref('user_title_interests') }}

),

-- The plays mart's rows with their load times: the same filter as the mart
-- (marts/core/plays.sql), over its table, without the mart's columns.
plays_loaded as (

    select
        plays_in_sessions.playback_id,
        plays_in_sessions.title_id,
        plays_in_sessions.play_date,
        plays_in_sessions.loaded_at,
        plays_in_sessions.session_loaded_at
    from {{ ref('int_plays_in_sessions') }} as plays_in_sessions
    inner join {{ ref('int_titles') }} as titles
        on plays_in_sessions.title_id = titles.title_id
    where not plays_in_sessions.is_in_bot_session

),

-- What each day's metrics are computed from, fingerprinted per day.
play_fingerprints as (

    select
        play_date as activity_date,
        {{ ottp.hash_sum(['playback_id', 'title_id', 'loaded_at', 'session_loaded_at']) }}
            as plays_fingerprint
    from plays_loaded
    group by play_date

),

reaction_fingerprints as (

    select
        cast(reacted_at as date) as activity_date,
        -- what the day's counts are made of, not who: a renamed (pseudonymised)
        -- user changes no day
        {{ ottp.hash_sum(['title_id', 'is_liked', 'is_disliked']) }} as reactions_fingerprint
    from interests
    where reacted_at is not null
    group by cast(reacted_at as date)

),

rating_fingerprints as (

    select
        cast(rated_at as date) as activity_date,
        {{ ottp.hash_sum(['title_id', 'rating']) }} as ratings_fingerprint
    from interests
    where rated_at is not null
    group by cast(rated_at as date)

),

fingerprint_days as (

    select activity_date from play_fingerprints
    union
    select activity_date from reaction_fingerprints
    union
    select activity_date from rating_fingerprints

),

day_fingerprints as (

    select
        fingerprint_days.activity_date,
        play_fingerprints.plays_fingerprint,
        reaction_fingerprints.reactions_fingerprint,
        rating_fingerprints.ratings_fingerprint
    from fingerprint_days
    left join play_fingerprints
        on fingerprint_days.activity_date = play_fingerprints.activity_date
    left join reaction_fingerprints
        on fingerprint_days.activity_date = reaction_fingerprints.activity_date
    left join rating_fingerprints
        on fingerprint_days.activity_date = rating_fingerprints.activity_date

),

{% if is_incremental() %}

previous_days as (

    select
        activity_date,
        plays_fingerprint,
        reactions_fingerprint,
        ratings_fingerprint
    from {{ this }}
    -- a day row without fingerprints marks a day left with nothing: as if absent
    where
        title_id is null
        and (
            plays_fingerprint is not null
            or reactions_fingerprint is not null
            or ratings_fingerprint is not null
        )

),

-- Days whose inputs differ from what their rows were computed from, on
-- either side: a day that gained its first play or lost its last one too.
changed_days as (

    select coalesce(now_days.activity_date, previous_days.activity_date) as activity_date
    from day_fingerprints as now_days
    full outer join previous_days
        on now_days.activity_date = previous_days.activity_date
    where
        now_days.activity_date is null
        or previous_days.activity_date is null
        or not (
            {%- for part in ['plays', 'reactions', 'ratings'] %}
            {{ 'and ' if not loop.first }}coalesce(
                now_days.{{ part }}_fingerprint = previous_days.{{ part }}_fingerprint,
                now_days.{{ part }}_fingerprint is null
                and previous_days.{{ part }}_fingerprint is null
            )
            {%- endfor %}
        )

),

{% else %}

changed_days as (

    select activity_date from day_fingerprints

),

{% endif %}

day_plays as (

    select plays.*
    from plays
    where plays.play_date in (select changed_days.activity_date from changed_days)

),

day_pauses as (

    select pauses.*
    from pauses
    where pauses.play_date in (select changed_days.activity_date from changed_days)

),

-- Plays, most rewatched and most paused scenes per title and play day
-- (macros/engagement.sql: the same metrics for both engagement marts).
play_metrics as (

    {{ ottp.title_play_metrics('day_plays', by_day=true) }}

),

scenes as (

    {{ ottp.title_rewatched_scenes('day_plays', by_day=true) }}

),

paused_scenes as (

    {{ ottp.title_paused_scenes('day_pauses', by_day=true) }}

),

reactions as (

    select
        title_id,
        cast(reacted_at as date) as activity_date,
        sum({{ ottp.flag('is_liked') }}) as like_count,
        sum({{ ottp.flag('is_disliked') }}) as dislike_count
    from interests
    where
        reacted_at is not null
        and cast(reacted_at as date) in (select changed_days.activity_date from changed_days)
    group by title_id, cast(reacted_at as date)

),

ratings as (

    select
        title_id,
        cast(rated_at as date) as activity_date,
        count(*) as rating_count,
        avg(rating) as avg_rating
    from interests
    where
        rated_at is not null
        and cast(rated_at as date) in (select changed_days.activity_date from changed_days)
    group by title_id, cast(rated_at as date)

),

title_days as (

    select
        title_id,
        activity_date
    from play_metrics
    union
    select
        title_id,
        activity_date
    from reactions
    union
    select
        title_id,
        activity_date
    from ratings
    union
    -- the day row: its fingerprints now (none for a day left empty)
    select
        cast(null as {{ dbt.type_string() }}) as title_id,
        activity_date
    from changed_days

),

final as (

    select
        -- ids
        title_days.title_id,
        title_days.activity_date,

        -- plays
        coalesce(play_metrics.play_count, 0) as play_count,
        coalesce(play_metrics.valid_play_count, 0) as valid_play_count,
        coalesce(play_metrics.viewer_count, 0) as viewer_count,
        coalesce(play_metrics.completed_play_count, 0) as completed_play_count,
        {{ ottp.safe_ratio('play_metrics.completed_play_count', 'play_metrics.play_count') }}
            as completion_rate,
        coalesce(play_metrics.played_s, 0) as played_s,
        play_metrics.avg_percent_watched,

        -- retention curve: share of the day's plays still watching at each 10%
        {%- for step in range(10, 101, 10) %}
        play_metrics.retention_{{ step }}_pct,
        {%- endfor %}

        -- rewatching
        coalesce(play_metrics.rewatched_play_count, 0) as rewatched_play_count,
        scenes.scene_start_s as most_rewatched_scene_s,
        scenes.scene_start_s + {{ scene_s }} as most_rewatched_scene_end_s,

        -- pausing
        coalesce(play_metrics.pause_count, 0) as pause_count,
        paused_scenes.scene_start_s as most_paused_scene_s,
        paused_scenes.scene_start_s + {{ scene_s }} as most_paused_scene_end_s,

        -- expressed interests
        coalesce(reactions.like_count, 0) as like_count,
        coalesce(reactions.dislike_count, 0) as dislike_count,
        {{ ottp.safe_ratio(
            'reactions.like_count',
            'reactions.like_count + reactions.dislike_count'
        ) }} as like_ratio,
        coalesce(ratings.rating_count, 0) as rating_count,
        ratings.avg_rating,

        -- fingerprints: on day rows only
        day_fingerprints.plays_fingerprint,
        day_fingerprints.reactions_fingerprint,
        day_fingerprints.ratings_fingerprint

    from title_days
    left join play_metrics
        on
            title_days.title_id = play_metrics.title_id
            and title_days.activity_date = play_metrics.activity_date
    left join scenes
        on
            title_days.title_id = scenes.title_id
            and title_days.activity_date = scenes.activity_date
            and scenes.scene_rank = 1
    left join paused_scenes
        on
            title_days.title_id = paused_scenes.title_id
            and title_days.activity_date = paused_scenes.activity_date
            and paused_scenes.scene_rank = 1
    left join reactions
        on
            title_days.title_id = reactions.title_id
            and title_days.activity_date = reactions.activity_date
    left join ratings
        on
            title_days.title_id = ratings.title_id
            and title_days.activity_date = ratings.activity_date
    left join day_fingerprints
        on
            title_days.title_id is null
            and title_days.activity_date = day_fingerprints.activity_date

)

select * from final
