"""Home-screen rails per user, built in DuckDB from the marts and the ml tables.

Rails in this order, each with up to ``items`` titles, a title appearing once per
home screen (on its first rail):

1. continue_watching   marts.continue_watching
2. next_episode        marts.next_episodes
3. top_picks           ml.recommendations
4. because_you_watched ml.similar_titles of the user's latest completed or liked
                       titles (one per series) that the user watched (a valid play) or
                       liked, up to ``anchor_rails`` rails: "Because you liked X" for a
                       liked title, "Because you watched X" otherwise
5. category_top_picks  the user's recommendations in each category they are a fan
                       of (marts.user_category_segments), then that category's
                       trending titles, up to ``category_rails`` rails
6. trending            most viewers over the last ``trend_days``

Discovery rails (3-6) never show a title the user watched or disliked, or an
unavailable one; a discovery rail with fewer than ``min_items`` titles is dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

RAILS_SQL = """
with

users as (

    select user_id from marts.users where not coalesce(is_deleted, false)

),

titles as (

    select
        title_id,
        title_name,
        series_id,
        category,
        coalesce(category_name, category) as category_name,
        coalesce(is_available, false) as is_available
    from marts.titles

),

excluded as (

    select user_id, title_id from ml.training_interactions where is_excluded

),

popular as (

    select
        titles.title_id,
        titles.category,
        row_number() over (
            order by coalesce(recent.viewers, 0) desc, titles.title_id
        ) as global_rank,
        row_number() over (
            partition by titles.category
            order by coalesce(recent.viewers, 0) desc, titles.title_id
        ) as category_rank
    from titles
    left join (
        select title_id, count(distinct user_id) as viewers
        from marts.plays
        where is_valid_play and started_at >= $trend_since
        group by title_id
    ) as recent on titles.title_id = recent.title_id
    where titles.is_available

),

continue_watching as (

    select
        user_id, 1 as rail_order, 0 as rail_sub, 'continue_watching' as rail_type,
        'Continue watching' as rail_title, title_id, continue_rank as item_order,
        cast(null as varchar) as anchor_title_id, cast(null as varchar) as category
    from marts.continue_watching

),

next_episode as (

    select
        user_id, 2, 0, 'next_episode', 'Your next episodes', next_title_id,
        row_number() over (partition by user_id order by last_completed_at desc, next_title_id),
        last_completed_title_id, null
    from marts.next_episodes

),

top_picks as (

    select
        user_id, 3, 0, 'top_picks', 'Top picks for you', title_id, rank, null, null
    from ml.recommendations
    where rank <= 3 * $items

),

anchors as (

    select user_id, title_id, is_liked, row_number() over (
        partition by user_id order by last_interaction_at desc, title_id
    ) as anchor_rank
    from (
        select
            interactions.user_id,
            interactions.title_id,
            interactions.is_liked,
            interactions.last_interaction_at,
            row_number() over (
                partition by interactions.user_id, coalesce(titles.series_id, titles.title_id)
                order by interactions.last_interaction_at desc, interactions.title_id
            ) as series_pick
        from ml.training_interactions as interactions
        inner join titles on interactions.title_id = titles.title_id
        -- similar titles exist for available titles only
        where
            interactions.evidence in ('completed', 'liked')
            and (interactions.has_watched or interactions.is_liked)
            and titles.is_available
    )
    where series_pick = 1

),

because_you_watched as (

    select
        anchors.user_id, 4, anchors.anchor_rank, 'because_you_watched',
        case when anchors.is_liked then 'Because you liked ' else 'Because you watched ' end
            || titles.title_name,
        neighbours.similar_title_id, neighbours.rank,
        anchors.title_id, null
    from anchors
    inner join ml.similar_titles as neighbours on anchors.title_id = neighbours.title_id
    inner join titles on anchors.title_id = titles.title_id
    where anchors.anchor_rank <= $anchor_rails

),

fan_categories as (

    select
        user_id,
        category,
        row_number() over (partition by user_id order by category_rank, category) as fan_rank
    from marts.user_category_segments
    where is_fan

),

category_top_picks as (

    select
        fans.user_id, 5, fans.fan_rank, 'category_top_picks',
        'Top picks in ' || titles.category_name, recs.title_id, recs.rank, null, fans.category
    from fan_categories as fans
    inner join ml.recommendations as recs on fans.user_id = recs.user_id
    inner join titles on recs.title_id = titles.title_id and titles.category = fans.category
    where fans.fan_rank <= $category_rails

    union all

    select
        fans.user_id, 5, fans.fan_rank, 'category_top_picks',
        'Top picks in ' || titles.category_name, popular.title_id,
        10000 + popular.category_rank, null, fans.category
    from fan_categories as fans
    inner join popular on fans.category = popular.category
    inner join titles on popular.title_id = titles.title_id
    where fans.fan_rank <= $category_rails and popular.category_rank <= 3 * $items

),

trending as (

    select
        users.user_id, 6, 0, 'trending', 'Trending now', popular.title_id,
        popular.global_rank, null, null
    from users
    cross join popular
    where popular.global_rank <= 3 * $items

),

discovery as (

    select * from top_picks
    union all select * from because_you_watched
    union all select * from category_top_picks
    union all select * from trending

),

candidates as (

    select * from continue_watching
    union all select * from next_episode
    union all
    select discovery.*
    from discovery
    inner join titles on discovery.title_id = titles.title_id and titles.is_available
    anti join excluded
        on discovery.user_id = excluded.user_id and discovery.title_id = excluded.title_id

),

first_rail as (

    select
        candidates.*,
        row_number() over (
            partition by candidates.user_id, candidates.title_id
            order by rail_order, rail_sub, item_order
        ) as copy
    from candidates
    inner join users on candidates.user_id = users.user_id

),

items as (

    select
        *,
        row_number() over (
            partition by user_id, rail_order, rail_sub order by item_order, title_id
        ) as item_rank,
        count(*) over (partition by user_id, rail_order, rail_sub) as rail_size
    from first_rail
    where copy = 1

),

kept as (

    select *
    from items
    where
        item_rank <= $items
        and (rail_order <= 2 or rail_size >= $min_items)

)

select
    user_id,
    cast(dense_rank() over (partition by user_id order by rail_order, rail_sub) as integer)
        as rail_rank,
    rail_type,
    rail_title,
    cast(item_rank as integer) as item_rank,
    title_id,
    anchor_title_id,
    category
from kept
order by user_id, rail_rank, item_rank
"""


def home_rails(
    as_of: datetime,
    items: int = 10,
    anchor_rails: int = 2,
    category_rails: int = 2,
    min_items: int = 3,
    trend_days: int = 7,
) -> tuple[str, dict]:
    """The rails select and its parameters, for ml.warehouse.write_tables.

    Built inside DuckDB: the rails never travel through Python.
    """
    return RAILS_SQL, {
        "items": items,
        "anchor_rails": anchor_rails,
        "category_rails": category_rails,
        "min_items": min_items,
        "trend_since": as_of - timedelta(days=trend_days),
    }
