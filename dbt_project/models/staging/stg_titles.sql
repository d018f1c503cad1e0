-- The catalog arrives as full snapshots; the latest snapshot a title appears in wins.
with source as (

    select * from {{ source('raw', 'titles') }}

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
