-- Survey answers, one per response event; a respondent who answers the same
-- question of a survey again is counted once per answer given.
with

responses as (

    select * from {{ ref('stg_survey_responses') }}

),

final as (

    select
        -- ids
        event_id as response_id,
        user_id,
        survey_id,
        question_id,

        -- answer
        coalesce(answer, '(no answer)') as answer,

        -- timestamps
        occurred_at as answered_at,
        cast(occurred_at as date) as answered_date

    from responses

)

select * from final
