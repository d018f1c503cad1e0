-- The triggers the CRM's automations start from: the ledger's triggers fired
-- for a user who is still a contact, within crm_trigger_retention_days. A
-- trigger_id appears here once, ever (crm_trigger_log); consumers start an
-- automation once per trigger_id.
with

trigger_log as (

    select * from {{ ref('crm_trigger_log') }}

),

contacts as (

    select * from {{ ref('crm_contacts') }}

),

as_of as (

    select max(as_of_at) as as_of_at from {{ ref('user_lifecycle') }}

),

final as (

    select
        -- ids
        trigger_log.trigger_id,
        trigger_log.user_id,

        -- descriptive
        trigger_log.scenario,
        trigger_log.subject_type,
        trigger_log.subject_id,
        trigger_log.subject_name,
        trigger_log.category,
        trigger_log.cancel_reason,
        trigger_log.cancel_reason_description,

        -- booleans
        trigger_log.is_cancel_reason_addressable,

        -- timestamps
        trigger_log.occurred_at,
        trigger_log.fired_at

    from trigger_log
    inner join contacts
        on trigger_log.user_id = contacts.user_id
    cross join as_of
    where
        not trigger_log.is_suppressed
        and trigger_log.fired_at
        > {{ ottp.shift_timestamp('day', -var('crm_trigger_retention_days'), 'as_of.as_of_at') }}

)

select * from final
