-- Every user's segments in one row: the categories they are a fan of (hardcore
-- fan categories included) and a hardcore fan of, each list with its count,
-- their highest segment, their top categories and how often they pause.
with

users as (

    select * from {{ ref('users') }}

),

segments as (

    select * from {{ ref('user_category_segments') }}

),

thresholds as (

    select * from {{ ref('segment_thresholds') }}

),

affinity as (

    select * from {{ ref('user_category_affinity') }}

),

plays as (

    select * from {{ ref('plays') }}

),

-- The user's highest segment over all categories, ranked by its threshold.
highest as (

    select
        segments.user_id,
        max(segments.segment_min_titles) as highest_min_titles
    from segments
    where segments.is_fan
    group by segments.user_id

),

segment_counts as (

    select
        segments.user_id,
        -- a hardcore fan of a category is a fan of it too: the count is the
        -- length of fan_categories
        sum({{ ottp.flag('segments.is_fan') }}) as fan_category_count,
        sum({{ ottp.flag("segments.segment = 'hardcore_fan'") }})
            as hardcore_fan_category_count,
        {{ ottp.ordered_listagg(
            "case when segments.is_fan then segments.category end",
            "','",
            ["segments.category"]
        ) }} as fan_categories,
        {{ ottp.ordered_listagg(
            "case when segments.segment = 'hardcore_fan' then segments.category end",
            "','",
            ["segments.category"]
        ) }} as hardcore_fan_categories
    from segments
    group by segments.user_id

),

-- Pauses per hour of content played, over valid plays (bot sessions are not in plays).
pauses as (

    select
        user_id,
        sum(pause_count) as pause_count,
        sum(played_s) as played_s
    from plays
    where is_valid_play
    group by user_id

),

top_categories as (

    select
        user_id,
        max(case when category_rank = 1 then category end) as top_category,
        {{ ottp.ordered_listagg(
            "case when is_top_category then category end",
            "','",
            ["category_rank"]
        ) }} as top_categories,
        sum(titles_watched) as titles_watched,
        sum(watch_time_s) as watch_time_s
    from affinity
    group by user_id

),

final as (

    select
        -- ids
        users.user_id,

        -- segments
        case
            when thresholds.segment is not null then thresholds.segment
            when top_categories.watch_time_s > 0 then 'casual'
            else 'non_viewer'
        end as highest_segment,
        segment_counts.fan_categories,
        segment_counts.hardcore_fan_categories,
        top_categories.top_category,
        top_categories.top_categories,

        -- numerics
        coalesce(segment_counts.fan_category_count, 0) as fan_category_count,
        coalesce(segment_counts.hardcore_fan_category_count, 0)
            as hardcore_fan_category_count,
        coalesce(top_categories.titles_watched, 0) as titles_watched,
        coalesce(top_categories.watch_time_s, 0) as watch_time_s,
        -- null when nothing was watched
        case
            when pauses.played_s > 0
                then
                    cast(pauses.pause_count as {{ ottp.type_double() }})
                    / (pauses.played_s / 3600.0)
        end as pauses_per_hour_watched,

        -- booleans
        coalesce(segment_counts.fan_category_count, 0) > 0 as is_fan_of_any,
        users.is_deleted

    from users
    left join highest
        on users.user_id = highest.user_id
    left join thresholds
        on highest.highest_min_titles = thresholds.min_titles_watched
    left join segment_counts
        on users.user_id = segment_counts.user_id
    left join top_categories
        on users.user_id = top_categories.user_id
    left join pauses
        on users.user_id = pauses.user_id

)

select * from final
