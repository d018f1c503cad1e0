-- The fan rule per user and category: the highest segment of the
-- segment_thresholds seed whose min_titles_watched the user's distinct titles
-- watched (valid plays) in the category reach; 'casual' below all of them.
with

affinity as (

    select * from {{ ref('user_category_affinity') }}

),

thresholds as (

    select * from {{ ref('segment_thresholds') }}

),

reached as (

    select
        affinity.user_id,
        affinity.category,
        max(thresholds.min_titles_watched) as segment_min_titles
    from affinity
    inner join thresholds
        on affinity.titles_watched >= thresholds.min_titles_watched
    group by affinity.user_id, affinity.category

),

final as (

    select
        -- ids
        affinity.user_id,
        affinity.category,

        -- segment
        coalesce(thresholds.segment, 'casual') as segment,
        reached.segment_min_titles,

        -- numerics
        affinity.titles_watched,
        affinity.watch_time_s,
        affinity.recency_score,
        affinity.category_rank,

        -- booleans
        thresholds.segment is not null as is_fan

    from affinity
    left join reached
        on
            affinity.user_id = reached.user_id
            and affinity.category = reached.category
    left join thresholds
        on reached.segment_min_titles = thresholds.min_titles_watched

)

select * from final
