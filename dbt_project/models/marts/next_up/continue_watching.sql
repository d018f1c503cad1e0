-- Titles in progress per user: the latest play of the title is a valid play
-- that stopped before the end, past continue_watching_min_position_s; it
-- resumes at the last position. Deleted users and unavailable titles are left out.
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

latest_plays as (

    select
        *,
        row_number() over (
            partition by user_id, title_id
            order by started_at desc, playback_id desc
        ) as recency_rank
    from plays
    where is_valid_play

),

in_progress as (

    select latest_plays.*
    from latest_plays
    inner join titles
        on latest_plays.title_id = titles.title_id
    inner join users
        on latest_plays.user_id = users.user_id
    where
        latest_plays.recency_rank = 1
        and not latest_plays.is_complete
        and latest_plays.last_position_s >= {{ var('continue_watching_min_position_s') }}
        and titles.is_available
        and not users.is_deleted

),

final as (

    select
        -- ids
        user_id,
        title_id,
        playback_id as last_playback_id,

        -- numerics
        last_position_s as resume_position_s,
        {{ ottp.safe_ratio('last_position_s', 'duration_s') }} as resume_pct,
        duration_s - last_position_s as remaining_s,
        row_number() over (
            partition by user_id order by ended_at desc, title_id asc
        ) as continue_rank,

        -- timestamps
        ended_at as last_watched_at

    from in_progress

)

select * from final
