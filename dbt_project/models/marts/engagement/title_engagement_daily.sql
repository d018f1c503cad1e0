-- Engagement per title and day: plays by the day they started, expressed
-- interests by the day the user's current reaction or rating was given.
{%- set scene_s = var('rewatch_scene_s') %}

with

plays as (

    select * from {{ ref('plays') }}

),

interests as (

    select * from {{ ref('user_title_interests') }}

),

pauses as (

    select * from {{ ref('pauses') }}

),

-- Plays, most rewatched and most paused scenes per title and play day
-- (macros/engagement.sql: the same metrics for both engagement marts).
play_metrics as (

    {{ ottp.title_play_metrics('plays', by_day=true) }}

),

scenes as (

    {{ ottp.title_rewatched_scenes('plays', by_day=true) }}

),

paused_scenes as (

    {{ ottp.title_paused_scenes('pauses', by_day=true) }}

),

reactions as (

    select
        title_id,
        cast(reacted_at as date) as activity_date,
        sum({{ ottp.flag('is_liked') }}) as like_count,
        sum({{ ottp.flag('is_disliked') }}) as dislike_count
    from interests
    where reacted_at is not null
    group by title_id, cast(reacted_at as date)

),

ratings as (

    select
        title_id,
        cast(rated_at as date) as activity_date,
        count(*) as rating_count,
        avg(rating) as avg_rating
    from interests
    where rated_at is not null
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
        ratings.avg_rating

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

)

select * from final
