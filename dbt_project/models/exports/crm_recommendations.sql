-- The recommender's list for each CRM contact, as ranked by the model. Rows
-- are passed through unfiltered: a watched or unknown title here is a
-- recommender bug, which the export's quality gate stops before the CRM.
with

recommendations as (

    select * from {{ source('ml', 'recommendations') }}

),

contacts as (

    select * from {{ ref('crm_contacts') }}

),

titles as (

    select * from {{ ref('titles') }}

),

final as (

    select
        -- ids
        recommendations.user_id,
        recommendations.rank,
        recommendations.title_id,

        -- descriptive
        titles.title_name,
        cast(recommendations.score as {{ ottp.type_double() }}) as score,
        recommendations.reason,
        recommendations.reason_title_id

    from recommendations
    inner join contacts
        on recommendations.user_id = contacts.user_id
    left join titles
        on recommendations.title_id = titles.title_id

)

select * from final
