-- Raw events kept out of staging: each breaks an input assumption of the
-- staging model its type belongs to, and is recorded here with the first one
-- it breaks (macros/quarantine.sql lists them, and the staging models filter
-- on the same list). A view over raw.events like the staging models, so at
-- any moment raw.events = staged rows + these rows.
with

events as (

    select * from {{ source('raw', 'events') }}

),

assumptions as (

    {{ ottp.quarantine_assumption_rows() }}

),

checked as (

    select
        -- ids
        event_id,
        event_type,

        -- the first broken assumption, null when none
        {{ ottp.quarantine_assumption_id() }} as assumption_id,

        -- where the row came from
        source_file,
        load_id,

        -- timestamps
        occurred_at,
        received_at,
        landing_date,
        loaded_at

    from events

),

quarantined as (

    select
        -- ids
        cast(checked.event_id as {{ dbt.type_string() }}) as event_id,
        checked.event_type,

        -- why
        assumptions.staging_model,
        assumptions.rule_id,
        assumptions.reason_code,
        assumptions.reason,

        -- where the row came from
        checked.source_file,
        checked.load_id,

        -- timestamps
        checked.occurred_at,
        checked.received_at,
        checked.landing_date,
        checked.loaded_at

    from checked
    inner join assumptions
        on checked.assumption_id = assumptions.assumption_id

)

select * from quarantined
