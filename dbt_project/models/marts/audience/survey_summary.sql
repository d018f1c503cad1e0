-- Survey answers per survey, question and answer, by the respondents' fan
-- segment and lifecycle stage at as_of, so sticking points show next to who
-- reports them.
with

responses as (

    select * from {{ ref('int_survey_responses') }}

),

lifecycle as (

    select * from {{ ref('user_lifecycle') }}

),

grouped as (

    select
        responses.survey_id,
        responses.question_id,
        responses.answer,
        coalesce(lifecycle.highest_segment, 'non_viewer') as segment,
        coalesce(lifecycle.lifecycle_stage, 'unknown') as lifecycle_stage,
        count(*) as response_count,
        count(distinct responses.user_id) as respondent_count,
        min(responses.answered_at) as first_answered_at,
        max(responses.answered_at) as last_answered_at
    from responses
    left join lifecycle
        on responses.user_id = lifecycle.user_id
    group by
        responses.survey_id,
        responses.question_id,
        responses.answer,
        coalesce(lifecycle.highest_segment, 'non_viewer'),
        coalesce(lifecycle.lifecycle_stage, 'unknown')

),

final as (

    select
        -- ids
        survey_id,
        question_id,
        answer,
        segment,
        lifecycle_stage,

        -- numerics
        response_count,
        respondent_count,
        -- share of the answers to this question from this segment and stage
        {{ ottp.safe_ratio(
            'response_count',
            'sum(response_count) over (
                partition by survey_id, question_id, segment, lifecycle_stage
            )'
        ) }} as answer_share,

        -- timestamps
        first_answered_at,
        last_answered_at

    from grouped

)

select * from final
