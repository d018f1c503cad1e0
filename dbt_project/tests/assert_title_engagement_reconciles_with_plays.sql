-- Title engagement counts every play of the marts once, overall and by day.
with

plays as (

    select count(*) as play_count from {{ ref('plays') }}

),

titles as (

    select sum(play_count) as play_count from {{ ref('title_engagement') }}

),

days as (

    select sum(play_count) as play_count from {{ ref('title_engagement_daily') }}

)

select
    plays.play_count as plays,
    titles.play_count as title_plays,
    days.play_count as daily_plays
from plays
cross join titles
cross join days
where
    plays.play_count <> coalesce(titles.play_count, 0)
    or plays.play_count <> coalesce(days.play_count, 0)
