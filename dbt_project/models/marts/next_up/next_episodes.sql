-- The next episode for each series a user follows: the episode after the
-- furthest one (in series order) the user completed, when there is one.
with

plays as (

    select * from {{ ref('plays') }}

),

titles as (

    select * from {{ ref('titles') }}

),

users as (

    select * from {{ ref('users') }}

),

completed_episodes as (

    select
        plays.user_id,
        titles.series_id,
        titles.title_id,
        titles.episode_order,
        titles.next_episode_title_id,
        plays.ended_at,
        row_number() over (
            partition by plays.user_id, titles.series_id
            order by titles.episode_order desc, plays.ended_at desc
        ) as furthest_rank
    from plays
    inner join titles
        on plays.title_id = titles.title_id
    where plays.is_complete and titles.is_episode

),

-- The user's latest play of each title, to show an episode already begun.
latest_plays as (

    select
        user_id,
        title_id,
        last_position_s,
        is_complete,
        row_number() over (
            partition by user_id, title_id
            order by started_at desc, playback_id desc
        ) as recency_rank
    from plays

),

final as (

    select
        -- ids
        completed_episodes.user_id,
        completed_episodes.series_id,
        completed_episodes.title_id as last_completed_title_id,
        next_titles.title_id as next_title_id,

        -- descriptive
        next_titles.title_name as next_title_name,
        next_titles.season_number as next_season_number,
        next_titles.episode_number as next_episode_number,

        -- numerics
        case
            when latest_plays.is_complete = false then latest_plays.last_position_s
        end as resume_position_s,

        -- booleans
        coalesce(latest_plays.is_complete = false, false) as is_next_in_progress,

        -- timestamps
        completed_episodes.ended_at as last_completed_at

    from completed_episodes
    inner join titles as next_titles
        on completed_episodes.next_episode_title_id = next_titles.title_id
    inner join users
        on completed_episodes.user_id = users.user_id
    left join latest_plays
        on
            completed_episodes.user_id = latest_plays.user_id
            and next_titles.title_id = latest_plays.title_id
            and latest_plays.recency_rank = 1
    where
        completed_episodes.furthest_rank = 1
        and next_titles.is_available
        and not users.is_deleted

)

select * from final
