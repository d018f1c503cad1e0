-- Titles with their category's display name and their place in the series.
with

titles as (

    select * from {{ ref('stg_titles') }}

),

categories as (

    select * from {{ ref('categories') }}

),

episode_order as (

    select
        title_id,
        row_number() over (
            partition by series_id
            order by season_number, episode_number, title_id
        ) as episode_order,
        lead(title_id) over (
            partition by series_id
            order by season_number, episode_number, title_id
        ) as next_episode_title_id
    from titles
    where is_episode and series_id is not null

),

joined as (

    select
        -- ids
        titles.title_id,
        titles.series_id,
        episode_order.next_episode_title_id,

        -- descriptive
        titles.title_name,
        titles.category,
        categories.display_name as category_name,
        titles.title_kind,
        titles.keywords,

        -- numerics
        titles.season_number,
        titles.episode_number,
        episode_order.episode_order,
        titles.duration_s,
        titles.release_year,

        -- booleans
        titles.is_episode,
        titles.is_available,

        -- dates
        titles.available_from,
        titles.snapshot_date

    from titles
    left join categories
        on titles.category = categories.category
    left join episode_order
        on titles.title_id = episode_order.title_id

)

select * from joined
