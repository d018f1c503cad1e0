-- Catalog rows kept out of stg_titles: each breaks an assumption of the model
-- and is recorded here with the first one it breaks (macros/quarantine.sql).
-- A view over raw.titles, so at any moment raw.titles = the rows stg_titles
-- chooses from + these rows.
with

titles as (

    select * from {{ source('raw', 'titles') }}

),

known_categories as (

    select * from {{ ref('categories') }}

),

assumptions as (

    {{ ottp.quarantine_assumption_rows('titles') }}

),

checked as (

    select
        -- ids
        titles.title_id,
        titles.category,
        titles.kind as title_kind,

        -- the first broken assumption, null when none
        {{ ottp.quarantine_assumption_id('titles') }} as assumption_id,

        -- where the row came from
        titles.source_file,
        titles.load_id,

        -- dates
        titles.snapshot_date,
        titles.loaded_at

    from titles
    left join known_categories
        on titles.category = known_categories.category

),

quarantined as (

    select
        -- ids
        checked.title_id,
        checked.category,
        checked.title_kind,

        -- why
        assumptions.rule_id,
        assumptions.reason_code,
        assumptions.reason,

        -- where the row came from
        checked.source_file,
        checked.load_id,

        -- dates
        checked.snapshot_date,
        checked.loaded_at

    from checked
    inner join assumptions
        on checked.assumption_id = assumptions.assumption_id

)

select * from quarantined
