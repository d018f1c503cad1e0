-- Every user id seen in the data, with the account state its account events
-- leave: the latest subscription event sets the status, the latest consent
-- update wins, a deletion request flags the user.
--
-- One row per person, deleted people included. Once a deleted user is
-- pseudonymised (ottp.crm.sync.pseudonymise_deleted_users), every row of theirs but
-- the deletion_request carries the pseudonym: the pseudonym is their row here,
-- flagged deleted (raw.deleted_users lists it), and an id whose only event is a
-- deletion_request is no row of its own. Late events of the real id keep it a
-- row, flagged deleted, until the next pass pseudonymises them. An account
-- active only in likely-bot sessions (int_sessions) is no row either.
with

account_events as (

    select * from {{ ref('stg_account_events') }}

),

deleted_pseudonyms as (

    {{ ottp.deleted_user_pseudonyms() }}

),

-- ids with a trace besides a deletion request
known_users as (

    select user_id from account_events
    where event_type <> 'deletion_request'
    union
    -- an account seen only in likely-bot sessions is no person
    select user_id from {{ ref('int_sessions') }}
    where user_id is not null and not is_likely_bot
    union
    select user_id from {{ ref('stg_survey_responses') }}

),

ranked as (

    select
        *,
        case
            when event_type in ('subscribe', 'cancel', 'reactivate') then 'subscription'
            else event_type
        end as account_kind,
        -- 1 for the latest subscribe, cancel or reactivate of the user
        row_number() over (
            partition by
                user_id,
                event_type in ('subscribe', 'cancel', 'reactivate')
            order by occurred_at desc, event_id desc
        ) as subscription_rank,
        -- 1 for the first and for the latest event of each type
        row_number() over (
            partition by user_id, event_type
            order by occurred_at, event_id
        ) as first_rank,
        row_number() over (
            partition by user_id, event_type
            order by occurred_at desc, event_id desc
        ) as latest_rank
    from account_events

),

account_state as (

    select
        user_id,

        -- signup: the first one
        max(case when event_type = 'signup' and first_rank = 1 then occurred_at end)
            as signed_up_at,
        max(case when event_type = 'signup' and first_rank = 1 then platform end)
            as signup_platform,
        max(case when event_type = 'signup' and first_rank = 1 then country end)
            as signup_country,

        -- subscription: the latest subscribe, cancel or reactivate
        max(
            case
                when account_kind = 'subscription' and subscription_rank = 1 then event_type
            end
        ) as latest_subscription_event,
        max(case when event_type = 'subscribe' and first_rank = 1 then occurred_at end)
            as first_subscribed_at,
        max(case when event_type = 'subscribe' and latest_rank = 1 then plan_name end)
            as plan_name,
        max(case when event_type = 'cancel' then occurred_at end) as last_cancelled_at,
        max(
            case
                when event_type = 'cancel' and subscription_rank = 1 then cancel_reason
            end
        ) as cancel_reason,
        max(case when event_type = 'reactivate' then occurred_at end)
            as last_reactivated_at,

        -- consent: the latest update wins
        max(
            case
                when event_type = 'consent_update' and latest_rank = 1
                    then {{ ottp.flag('is_marketing_opt_in') }}
            end
        ) as marketing_opt_in_flag,
        max(case when event_type = 'consent_update' and latest_rank = 1 then occurred_at end)
            as consent_updated_at,

        -- deletion
        min(case when event_type = 'deletion_request' then occurred_at end)
            as deletion_requested_at

    from ranked
    group by user_id

),

final as (

    select
        -- ids
        known_users.user_id,

        -- descriptive
        account_state.plan_name,
        account_state.signup_country as country,
        account_state.signup_platform,
        case account_state.latest_subscription_event
            when 'subscribe' then 'active'
            when 'reactivate' then 'active'
            when 'cancel' then 'cancelled'
            else 'none'
        end as subscription_status,
        account_state.cancel_reason,

        -- booleans
        coalesce(account_state.marketing_opt_in_flag = 1, false) as is_marketing_opt_in,
        (
            account_state.deletion_requested_at is not null
            or deleted_pseudonyms.pseudonym is not null
        ) as is_deleted,
        account_state.signed_up_at is not null as has_signup_event,

        -- timestamps
        account_state.signed_up_at,
        account_state.first_subscribed_at,
        account_state.last_cancelled_at,
        account_state.last_reactivated_at,
        account_state.consent_updated_at,
        coalesce(
            account_state.deletion_requested_at, deleted_pseudonyms.deletion_requested_at
        ) as deletion_requested_at

    from known_users
    left join account_state
        on known_users.user_id = account_state.user_id
    left join deleted_pseudonyms
        on known_users.user_id = deleted_pseudonyms.pseudonym

)

select * from final
