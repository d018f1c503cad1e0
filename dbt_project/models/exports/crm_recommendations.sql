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

),

-- The export contract's types on every engine (enforced: _exports__models.yml).
contracted as (

    select
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(rank as {{ dbt.type_bigint() }}) as rank,
        cast(title_id as {{ dbt.type_string() }}) as title_id,
        cast(title_name as {{ dbt.type_string() }}) as title_name,
        cast(score as {{ ottp.type_double() }}) as score,
        cast(reason as {{ dbt.type_string() }}) as reason,
        cast(reason_title_id as {{ dbt.type_string() }}) as reason_title_id
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
