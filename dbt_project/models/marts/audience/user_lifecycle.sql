-- Where each user stands at as_of. Stages, first rule that holds wins:
--   churned      the subscription is cancelled, or no play for
--                lifecycle_churned_days
--   reactivated  a reactivate event, or a play after lifecycle_churned_days
--                without one, within the last lifecycle_new_days
--   new          signed up within the last lifecycle_new_days
--   at_risk      no play for lifecycle_at_risk_days
--   active       otherwise
-- Inactivity counts from the last play, or from signup (else first activity)
-- for users who never played.
{%- set churned_days = var('lifecycle_churned_days') -%}
{%- set at_risk_days = var('lifecycle_at_risk_days') -%}
{%- set new_days = var('lifecycle_new_days') %}

with

users as (

    select * from {{ ref('users') }}

),

plays as (

    select * from {{ ref('plays') }}

),

segments as (

    select * from {{ ref('user_segments') }}

),

cancel_reasons as (

    select * from {{ ref('cancel_reasons') }}

),

as_of as (

    select * from {{ ref('int_as_of') }}

),

play_gaps as (

    select
        user_id,
        started_at,
        lag(started_at) over (partition by user_id order by started_at, playback_id)
            as previous_started_at
    from plays

),

play_activity as (

    select
        user_id,
        count(*) as play_count,
        sum({{ ottp.flag('is_valid_play') }}) as valid_play_count,
        min(started_at) as first_play_at,
        max(started_at) as last_play_at
    from plays
    group by user_id

),

-- The latest play that came after lifecycle_churned_days without one.
comebacks as (

    select
        user_id,
        max(started_at) as last_comeback_at
    from play_gaps
    where
        previous_started_at is not null
        and {{ ottp.days_between('previous_started_at', 'started_at') }}
        >= {{ churned_days }}
    group by user_id

),

measured as (

    select
        users.user_id,
        users.signed_up_at,
        users.first_active_at,
        users.last_active_at,
        users.subscription_status,
        users.cancel_reason,
        users.last_cancelled_at,
        users.last_reactivated_at,
        users.is_deleted,
        play_activity.first_play_at,
        play_activity.last_play_at,
        coalesce(play_activity.play_count, 0) as play_count,
        coalesce(play_activity.valid_play_count, 0) as valid_play_count,
        comebacks.last_comeback_at,
        segments.highest_segment,
        as_of.as_of_at,
        {{ ottp.days_between('play_activity.last_play_at', 'as_of.as_of_at') }}
            as days_since_last_play,
        {{ ottp.days_between('users.signed_up_at', 'as_of.as_of_at') }}
            as days_since_signup,
        {{ ottp.days_between(
            'coalesce(play_activity.last_play_at, users.signed_up_at, users.first_active_at)',
            'as_of.as_of_at'
        ) }} as days_inactive,
        case
            when users.last_reactivated_at is null then comebacks.last_comeback_at
            when comebacks.last_comeback_at is null then users.last_reactivated_at
            when users.last_reactivated_at > comebacks.last_comeback_at
                then users.last_reactivated_at
            else comebacks.last_comeback_at
        end as returned_at
    from users
    cross join as_of
    left join play_activity
        on users.user_id = play_activity.user_id
    left join comebacks
        on users.user_id = comebacks.user_id
    left join segments
        on users.user_id = segments.user_id

),

staged as (

    select
        *,
        case
            when subscription_status = 'cancelled' then 'churned'
            when days_inactive >= {{ churned_days }} then 'churned'
            when
                returned_at is not null
                and {{ ottp.days_between('returned_at', 'as_of_at') }} < {{ new_days }}
                then 'reactivated'
            when days_since_signup < {{ new_days }} then 'new'
            when days_inactive >= {{ at_risk_days }} then 'at_risk'
            else 'active'
        end as lifecycle_stage
    from measured

),

final as (

    select
        -- ids
        staged.user_id,

        -- descriptive
        staged.lifecycle_stage,
        staged.subscription_status,
        staged.highest_segment,
        staged.cancel_reason,
        cancel_reasons.description as cancel_reason_description,

        -- numerics
        staged.play_count,
        staged.valid_play_count,
        staged.days_since_last_play,
        staged.days_since_signup,
        staged.days_inactive,

        -- booleans
        staged.subscription_status = 'cancelled' as is_cancelled,
        cancel_reasons.is_addressable as is_cancel_reason_addressable,
        staged.is_deleted,

        -- timestamps
        staged.signed_up_at,
        {{ dbt.date_trunc('month', 'coalesce(staged.signed_up_at, staged.first_active_at)') }}
            as signup_cohort_month,
        staged.first_active_at,
        staged.last_active_at,
        staged.first_play_at,
        staged.last_play_at,
        staged.last_cancelled_at,
        staged.returned_at,
        staged.as_of_at

    from staged
    left join cancel_reasons
        on staged.cancel_reason = cancel_reasons.reason_code

)

select * from final
