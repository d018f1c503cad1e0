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

)

select * from final
