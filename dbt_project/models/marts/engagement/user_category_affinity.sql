-- How much each user cares for each category: what they watched (valid
-- plays) and what they said (latest interests), with a recency-weighted score
-- whose weight halves every affinity_half_life_days.
with

plays as (

    select * from {{ ref('plays') }}

),

interests as (

    select * from {{ ref('user_title_interests') }}

),

play_metrics as (

    select
        user_id,
        category,
        count(distinct title_id) as titles_watched,
        count(*) as valid_play_count,
        sum(played_s) as watch_time_s,
        sum(
            played_s / 3600.0
            * power(
                0.5,
                greatest(
                    {{ ottp.seconds_between('started_at', ottp.as_of_at()) }}, 0
                ) / 86400.0 / {{ var('affinity_half_life_days') }}
            )
        ) as recency_score,
        max(started_at) as last_played_at
    from plays
    where is_valid_play
    group by user_id, category

),

interest_metrics as (

    select
        user_id,
        category,
        sum({{ ottp.flag('is_liked') }}) as like_count,
        sum({{ ottp.flag('is_disliked') }}) as dislike_count,
        sum({{ ottp.flag('is_rated') }}) as rating_count,
        avg(rating) as avg_rating
    from interests
    group by user_id, category

),

user_categories as (

    select
        user_id,
        category
    from play_metrics
    union
    select
        user_id,
        category
    from interest_metrics

),

joined as (

    select
        user_categories.user_id,
        user_categories.category,
        coalesce(play_metrics.titles_watched, 0) as titles_watched,
        coalesce(play_metrics.valid_play_count, 0) as valid_play_count,
        coalesce(play_metrics.watch_time_s, 0) as watch_time_s,
        coalesce(play_metrics.recency_score, 0) as recency_score,
        coalesce(interest_metrics.like_count, 0) as like_count,
        coalesce(interest_metrics.dislike_count, 0) as dislike_count,
        coalesce(interest_metrics.rating_count, 0) as rating_count,
        interest_metrics.avg_rating,
        play_metrics.last_played_at
    from user_categories
    left join play_metrics
        on
            user_categories.user_id = play_metrics.user_id
            and user_categories.category = play_metrics.category
    left join interest_metrics
        on
            user_categories.user_id = interest_metrics.user_id
            and user_categories.category = interest_metrics.category

),

ranked as (

    select
        *,
        {{ ottp.safe_ratio('watch_time_s', 'sum(watch_time_s) over (partition by user_id)') }}
            as share_of_watch_time,
        row_number() over (
            partition by user_id
            order by recency_score desc, watch_time_s desc, like_count desc, category asc
        ) as category_rank
    from joined

),

final as (

    select
        -- ids
        user_id,
        category,

        -- numerics
        titles_watched,
        valid_play_count,
        watch_time_s,
        share_of_watch_time,
        like_count,
        dislike_count,
        rating_count,
        avg_rating,
        recency_score,
        category_rank,

        -- booleans
        category_rank <= {{ var('top_categories_per_user') }} and watch_time_s > 0
            as is_top_category,

        -- timestamps
        last_played_at

    from ranked

)

select * from final
