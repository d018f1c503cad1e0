-- Engagement per catalog title over all plays and the latest interests.
{%- set scene_s = var('rewatch_scene_s') %}

with

titles as (

    select * from {{ ref('titles') }}

),

plays as (

    select * from {{ ref('plays') }}

),

interests as (

    select * from {{ ref('user_title_interests') }}

),

pauses as (

    select * from {{ ref('pauses') }}

),

-- Plays, most rewatched and most paused scenes per title
-- (macros/engagement.sql: the same metrics for both engagement marts).
play_metrics as (

    {{ ottp.title_play_metrics('plays') }}

),

scenes as (

    {{ ottp.title_rewatched_scenes('plays') }}

),

paused_scenes as (

    {{ ottp.title_paused_scenes('pauses') }}

),

interest_metrics as (

    select
        title_id,
        sum({{ ottp.flag('is_liked') }}) as like_count,
        sum({{ ottp.flag('is_disliked') }}) as dislike_count,
        sum({{ ottp.flag('is_rated') }}) as rating_count,
        avg(rating) as avg_rating,
        sum(share_count) as share_count,
        sum({{ ottp.flag('is_on_watchlist') }}) as watchlist_count
    from interests
    group by title_id

),

final as (

    select
        -- ids
        titles.title_id,

        -- descriptive
        titles.title_name,
        titles.category,
        titles.title_kind,

        -- plays
        coalesce(play_metrics.play_count, 0) as play_count,
        coalesce(play_metrics.valid_play_count, 0) as valid_play_count,
        coalesce(play_metrics.viewer_count, 0) as viewer_count,
        coalesce(play_metrics.completed_play_count, 0) as completed_play_count,
        {{ ottp.safe_ratio('play_metrics.completed_play_count', 'play_metrics.play_count') }}
            as completion_rate,
        coalesce(play_metrics.played_s, 0) as played_s,
        play_metrics.avg_percent_watched,

        -- retention curve: share of plays still watching at each 10%
        {%- for step in range(10, 101, 10) %}
        play_metrics.retention_{{ step }}_pct,
        {%- endfor %}

        -- rewatching
        coalesce(play_metrics.rewatched_play_count, 0) as rewatched_play_count,
        scenes.scene_start_s as most_rewatched_scene_s,
        scenes.scene_start_s + {{ scene_s }} as most_rewatched_scene_end_s,
        scenes.rewatched_s as most_rewatched_scene_rewatched_s,

        -- pausing
        coalesce(play_metrics.pause_count, 0) as pause_count,
        coalesce(play_metrics.paused_play_count, 0) as paused_play_count,
        paused_scenes.scene_start_s as most_paused_scene_s,
        paused_scenes.scene_start_s + {{ scene_s }} as most_paused_scene_end_s,
        paused_scenes.pause_count as most_paused_scene_pause_count,
        paused_scenes.paused_play_count as most_paused_scene_play_count,

        -- expressed interests
        coalesce(interest_metrics.like_count, 0) as like_count,
        coalesce(interest_metrics.dislike_count, 0) as dislike_count,
        {{ ottp.safe_ratio(
            'interest_metrics.like_count',
            'interest_metrics.like_count + interest_metrics.dislike_count'
        ) }} as like_ratio,
        coalesce(interest_metrics.rating_count, 0) as rating_count,
        interest_metrics.avg_rating,
        coalesce(interest_metrics.share_count, 0) as share_count,
        coalesce(interest_metrics.watchlist_count, 0) as watchlist_count

    from titles
    left join play_metrics
        on titles.title_id = play_metrics.title_id
    left join scenes
        on titles.title_id = scenes.title_id and scenes.scene_rank = 1
    left join paused_scenes
        on
            titles.title_id = paused_scenes.title_id
            and paused_scenes.scene_rank = 1
    left join interest_metrics
        on titles.title_id = interest_metrics.title_id

)

select * from final
