-- "More like this" lists for title pages and e-mails, as ranked by the
-- recommender, with the similar title's name.
with

similar_titles as (

    select * from {{ source('ml', 'similar_titles') }}

),

titles as (

    select * from {{ ref('titles') }}

),

final as (

    select
        -- ids
        similar_titles.title_id,
        similar_titles.rank,
        similar_titles.similar_title_id,

        -- descriptive
        titles.title_name as similar_title_name,
        cast(similar_titles.score as {{ ottp.type_double() }}) as score

    from similar_titles
    left join titles
        on similar_titles.similar_title_id = titles.title_id

),

-- The export contract's types on every engine (enforced: _exports__models.yml).
contracted as (

    select
        cast(title_id as {{ dbt.type_string() }}) as title_id,
        cast(rank as {{ dbt.type_bigint() }}) as rank,
        cast(similar_title_id as {{ dbt.type_string() }}) as similar_title_id,
        cast(similar_title_name as {{ dbt.type_string() }}) as similar_title_name,
        cast(score as {{ ottp.type_double() }}) as score
    from final

),

-- The row hash the sync compares to find changed rows (macros/row_hash.sql).
hashed as (

    select
        *,
        {{ ottp.row_hash() }} as _row_hash
    from contracted

)

select * from hashed
