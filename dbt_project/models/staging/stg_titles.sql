-- The catalog arrives as full snapshots; the latest snapshot a title appears in wins.
-- A catalog row that breaks an assumption of the model (a category outside
-- the seed, ...) is in stg_quarantined_titles instead (macros/quarantine.sql).
with source as (

    select titles.*
    from {{ source('raw', 'titles') }} as titles
    left join {{ ref('categories') }} as known_categories
        on titles.category = known_categories.category
    where {{ ottp.meets_title_assumptions() }}

),

latest as (

    select
        *,
        row_number() over (
            partition by title_id order by snapshot_date desc, loaded_at desc
        ) as snapshot_rank
    from source

),

renamed as (

    select
        -- ids
        title_id,
        series_id,

        -- descriptive
        name as title_name,
        category,
        kind as title_kind,
        {{ ottp.list_to_text('keywords') }} as keywords,

        -- numerics
        season as season_number,
        episode as episode_number,
        duration_s,
        release_year,

        -- booleans
        kind = 'episode' as is_episode,
        is_available,

        -- dates
        available_from,
        snapshot_date

    from latest
    where snapshot_rank = 1

)

select * from renamed
