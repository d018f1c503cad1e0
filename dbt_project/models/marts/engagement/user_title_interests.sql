-- Expressed interests (likes, dislikes, ratings, shares, watchlist adds) per
-- user and catalog title, latest state wins.
with

interests as (

    select * from {{ ref('int_user_title_interests') }}

),

titles as (

    select * from {{ ref('titles') }}

),

final as (

    select
        -- ids
        interests.user_id,
        interests.title_id,

        -- descriptive
        titles.category,
        interests.reaction,
        interests.rating,

        -- numerics
        interests.share_count,
        interests.interest_event_count,

        -- booleans
        interests.is_liked,
        interests.is_disliked,
        interests.is_rated,
        interests.is_shared,
        interests.is_on_watchlist,

        -- timestamps
        interests.reacted_at,
        interests.rated_at,
        interests.last_shared_at,
        interests.added_to_watchlist_at,
        interests.first_interest_at,
        interests.last_interest_at

    from interests
    inner join titles
        on interests.title_id = titles.title_id

)

select * from final
