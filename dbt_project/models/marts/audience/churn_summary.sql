-- Churn by fan segment, signup cohort month and cancel reason, at as_of.
with

lifecycle as (

    select * from {{ ref('user_lifecycle') }}

),

grouped as (

    select
        coalesce(highest_segment, 'non_viewer') as segment,
        cast(signup_cohort_month as date) as signup_cohort_month,
        coalesce(cancel_reason, 'not_cancelled') as cancel_reason,
        count(*) as user_count,
        sum({{ ottp.flag("lifecycle_stage = 'churned'") }}) as churned_user_count,
        sum({{ ottp.flag('is_cancelled') }}) as cancelled_user_count,
        sum({{ ottp.flag("lifecycle_stage = 'at_risk'") }}) as at_risk_user_count,
        sum({{ ottp.flag("lifecycle_stage = 'reactivated'") }}) as reactivated_user_count,
        sum({{ ottp.flag("lifecycle_stage in ('new', 'active')") }}) as active_user_count,
        avg(days_since_last_play) as avg_days_since_last_play
    from lifecycle
    group by
        coalesce(highest_segment, 'non_viewer'),
        cast(signup_cohort_month as date),
        coalesce(cancel_reason, 'not_cancelled')

),

final as (

    select
        -- ids
        segment,
        signup_cohort_month,
        cancel_reason,

        -- numerics
        user_count,
        churned_user_count,
        cancelled_user_count,
        at_risk_user_count,
        reactivated_user_count,
        active_user_count,
        {{ ottp.safe_ratio('churned_user_count', 'user_count') }} as churn_rate,
        avg_days_since_last_play

    from grouped

)

select * from final
