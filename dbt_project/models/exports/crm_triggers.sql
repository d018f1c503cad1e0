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

),

-- The export contract's types on every engine (enforced: _exports__models.yml).
contracted as (

    select
        cast(trigger_id as {{ dbt.type_string() }}) as trigger_id,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(scenario as {{ dbt.type_string() }}) as scenario,
        cast(subject_type as {{ dbt.type_string() }}) as subject_type,
        cast(subject_id as {{ dbt.type_string() }}) as subject_id,
        cast(subject_name as {{ dbt.type_string() }}) as subject_name,
        cast(category as {{ dbt.type_string() }}) as category,
        cast(cancel_reason as {{ dbt.type_string() }}) as cancel_reason,
        cast(cancel_reason_description as {{ dbt.type_string() }}) as cancel_reason_description,
        cast(is_cancel_reason_addressable as {{ dbt.type_boolean() }})
            as is_cancel_reason_addressable,
        cast(occurred_at as {{ dbt.type_timestamp() }}) as occurred_at,
        cast(fired_at as {{ dbt.type_timestamp() }}) as fired_at
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
