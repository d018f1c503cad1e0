-- Engagement per title and day: plays by the day they started, expressed
-- interests by the day the user's current reaction or rating was given.
-- The rows are kept incrementally, a day at a time, in
-- int_title_engagement_daily; this is the filter over them (its day rows
-- left out), a view. On Spark it is a table: readers of a Spark warehouse
-- read its Parquet files.
{{ config(materialized=('table' if target.type == 'spark' else 'view')) }}

with

title_days as (

    select * from {{ ref('int_title_engagement_daily') }}

),

final as (

    select
        -- ids
        title_id,
        activity_date,

        -- plays
        play_count,
        valid_play_count,
        viewer_count,
        completed_play_count,
        completion_rate,
        played_s,
        avg_percent_watched,

        -- retention curve: share of the day's plays still watching at each 10%
        {%- for step in range(10, 101, 10) %}
        retention_{{ step }}_pct,
        {%- endfor %}

        -- rewatching
        rewatched_play_count,
        most_rewatched_scene_s,
        most_rewatched_scene_end_s,

        -- pausing
        pause_count,
        most_paused_scene_s,
        most_paused_scene_end_s,

        -- expressed interests
        like_count,
        dislike_count,
        like_ratio,
        rating_count,
        avg_rating

    from title_days
    -- day rows hold the fingerprints the incremental run compares
    where title_id is not null

)

select * from final
