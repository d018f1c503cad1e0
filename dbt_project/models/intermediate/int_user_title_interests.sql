-- Expressed interests per user and title: the latest like or dislike, the
-- latest rating and the latest watchlist add win; shares accumulate.
with

interest_events as (

    select
        *,
        case
            when event_type in ('like', 'dislike') then 'reaction'
            else event_type
        end as interest_kind
    from {{ ref('stg_interest_events') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by user_id, title_id, interest_kind
            order by occurred_at desc, event_id desc
        ) as recency_rank
    from interest_events

),

aggregated as (

    select
        user_id,
        title_id,
        max(case when interest_kind = 'reaction' and recency_rank = 1 then event_type end)
            as reaction,
        max(case when interest_kind = 'reaction' and recency_rank = 1 then occurred_at end)
            as reacted_at,
        max(case when interest_kind = 'rating' and recency_rank = 1 then rating end)
            as rating,
        max(case when interest_kind = 'rating' and recency_rank = 1 then occurred_at end)
            as rated_at,
        sum({{ ottp.flag("interest_kind = 'share'") }}) as share_count,
        max(case when interest_kind = 'share' then occurred_at end) as last_shared_at,
        max(case when interest_kind = 'add_to_watchlist' then occurred_at end)
            as added_to_watchlist_at,
        count(*) as interest_event_count,
        min(occurred_at) as first_interest_at,
        max(occurred_at) as last_interest_at
    from ranked
    group by user_id, title_id

),

final as (

    select
        -- ids
        user_id,
        title_id,

        -- latest state
        reaction,
        rating,

        -- numerics
        share_count,
        interest_event_count,

        -- booleans
        coalesce(reaction = 'like', false) as is_liked,
        coalesce(reaction = 'dislike', false) as is_disliked,
        rating is not null as is_rated,
        share_count > 0 as is_shared,
        added_to_watchlist_at is not null as is_on_watchlist,

        -- timestamps
        reacted_at,
        rated_at,
        last_shared_at,
        added_to_watchlist_at,
        first_interest_at,
        last_interest_at

    from aggregated

)

select * from final
