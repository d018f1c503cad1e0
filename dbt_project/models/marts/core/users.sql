-- The users dimension: account state for the CRM exports and BI.
with

users as (

    select * from {{ ref('int_users') }}

),

sessions as (

    select * from {{ ref('int_sessions') }}

),

activity as (

    select
        user_id,
        min(started_at) as first_active_at,
        max(ended_at) as last_active_at
    from sessions
    where user_id is not null and not is_likely_bot
    group by user_id

),

final as (

    select
        -- ids
        users.user_id,

        -- descriptive
        users.plan_name,
        users.country,
        users.signup_platform,
        users.subscription_status,
        users.cancel_reason,

        -- booleans
        users.is_marketing_opt_in,
        users.is_deleted,
        users.has_signup_event,
        -- a marketing message may go out: consent given and not deleted
        users.is_marketing_opt_in and not users.is_deleted as is_contactable,

        -- timestamps
        users.signed_up_at,
        users.first_subscribed_at,
        users.last_cancelled_at,
        users.last_reactivated_at,
        users.consent_updated_at,
        users.deletion_requested_at,
        activity.first_active_at,
        activity.last_active_at

    from users
    left join activity
        on users.user_id = activity.user_id

)

select * from final
