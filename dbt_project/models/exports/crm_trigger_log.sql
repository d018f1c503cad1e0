-- Every scenario trigger ever fired: the ledger that makes a trigger fire once
-- per user, scenario and subject. A run appends the triggers whose condition
-- occurred within crm_trigger_window_days before as_of and that are not in
-- the ledger yet; nothing is updated or re-fired afterwards, and a full
-- refresh is refused (full_refresh=false). A trigger met while the user could
-- not be contacted is logged as suppressed and never sent later. The triggers
-- the real-time server fired (macro live_triggers) are appended as they fired
-- (their fired_at and is_suppressed), and the batch never detects their ids.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        on_schema_change='fail',
    )
}}
{%- set window_days = var('crm_trigger_window_days') %}

with

users as (

    select * from {{ ref('users') }}

),

lifecycle as (

    select * from {{ ref('user_lifecycle') }}

),

plays as (

    select * from {{ ref('plays') }}

),

titles as (

    select * from {{ ref('titles') }}

),

categories as (

    select * from {{ ref('categories') }}

),

thresholds as (

    select * from {{ ref('segment_thresholds') }}

),

continue_watching as (

    select * from {{ ref('continue_watching') }}

),

next_episodes as (

    select * from {{ ref('next_episodes') }}

),

contacts as (

    select * from {{ ref('crm_contacts') }}

),

deleted_users as (

    select * from {{ source('privacy', 'deleted_users') }}

),

-- Fired by the real-time server (raw.live_triggers; empty without the live path).
live_fired as (

    {{ ottp.live_triggers() }}

),

as_of as (

    select max(as_of_at) as as_of_at from lifecycle

),

-- Users a trigger may concern: not deleted, not a deleted user's pseudonym.
eligible_users as (

    select users.user_id
    from users
    left join deleted_users
        on users.user_id = deleted_users.pseudonym
    where not users.is_deleted and deleted_users.pseudonym is null

),

-- Became a fan / hardcore fan: the moment the user's n-th distinct title of the
-- category got its first valid play, n being the segment's threshold (the rule
-- of user_category_segments).
first_valid_plays as (

    select
        user_id,
        category,
        title_id,
        min(started_at) as first_played_at
    from plays
    where is_valid_play and category is not null
    group by user_id, category, title_id

),

numbered_titles as (

    select
        *,
        row_number() over (
            partition by user_id, category
            order by first_played_at, title_id
        ) as title_number
    from first_valid_plays

),

segment_triggers as (

    select
        numbered_titles.user_id,
        'became_' || thresholds.segment as scenario,
        'category' as subject_type,
        numbered_titles.category as subject_id,
        categories.display_name as subject_name,
        numbered_titles.category,
        cast(null as {{ dbt.type_string() }}) as cancel_reason,
        cast(null as {{ dbt.type_string() }}) as cancel_reason_description,
        cast(null as {{ dbt.type_boolean() }}) as is_cancel_reason_addressable,
        numbered_titles.first_played_at as occurred_at
    from numbered_titles
    inner join thresholds
        on numbered_titles.title_number = thresholds.min_titles_watched
    left join categories
        on numbered_titles.category = categories.category

),

-- Abandoned a title after more than crm_abandon_min_pct of it: still unfinished
-- crm_abandon_after_days after the last play stopped.
abandon_triggers as (

    select
        continue_watching.user_id,
        'abandoned_title' as scenario,
        'title' as subject_type,
        continue_watching.title_id as subject_id,
        titles.title_name as subject_name,
        titles.category,
        cast(null as {{ dbt.type_string() }}) as cancel_reason,
        cast(null as {{ dbt.type_string() }}) as cancel_reason_description,
        cast(null as {{ dbt.type_boolean() }}) as is_cancel_reason_addressable,
        {{ ottp.shift_timestamp(
            'day', var('crm_abandon_after_days'), 'continue_watching.last_watched_at'
        ) }} as occurred_at
    from continue_watching
    inner join titles
        on continue_watching.title_id = titles.title_id
    where continue_watching.resume_pct > {{ var('crm_abandon_min_pct') }}

),

-- A new episode of a followed series: the next episode became available after
-- the user completed the one before it.
episode_triggers as (

    select
        next_episodes.user_id,
        'new_episode' as scenario,
        'title' as subject_type,
        next_episodes.next_title_id as subject_id,
        next_episodes.next_title_name as subject_name,
        titles.category,
        cast(null as {{ dbt.type_string() }}) as cancel_reason,
        cast(null as {{ dbt.type_string() }}) as cancel_reason_description,
        cast(null as {{ dbt.type_boolean() }}) as is_cancel_reason_addressable,
        cast(titles.available_from as {{ dbt.type_timestamp() }}) as occurred_at
    from next_episodes
    inner join titles
        on next_episodes.next_title_id = titles.title_id
    where
        not next_episodes.is_next_in_progress
        and cast(titles.available_from as {{ dbt.type_timestamp() }})
        > next_episodes.last_completed_at

),

-- At risk: lifecycle_at_risk_days without a play. The inactivity spell (the
-- day of the last activity) is the subject, so a later spell fires again.
risk_triggers as (

    select
        user_id,
        'at_risk' as scenario,
        'inactivity' as subject_type,
        cast(
            cast(coalesce(last_play_at, signed_up_at, first_active_at) as date)
            as {{ dbt.type_string() }}
        ) as subject_id,
        cast(null as {{ dbt.type_string() }}) as subject_name,
        cast(null as {{ dbt.type_string() }}) as category,
        cast(null as {{ dbt.type_string() }}) as cancel_reason,
        cast(null as {{ dbt.type_string() }}) as cancel_reason_description,
        cast(null as {{ dbt.type_boolean() }}) as is_cancel_reason_addressable,
        {{ ottp.shift_timestamp(
            'day',
            var('lifecycle_at_risk_days'),
            'coalesce(last_play_at, signed_up_at, first_active_at)'
        ) }} as occurred_at
    from lifecycle
    where lifecycle_stage = 'at_risk'

),

-- Cancelled: a win-back with the unsubscribe survey's reason. Each
-- cancellation is its own subject.
cancel_triggers as (

    select
        user_id,
        'cancelled' as scenario,
        'cancellation' as subject_type,
        cast(last_cancelled_at as {{ dbt.type_string() }}) as subject_id,
        cast(null as {{ dbt.type_string() }}) as subject_name,
        cast(null as {{ dbt.type_string() }}) as category,
        cancel_reason,
        cancel_reason_description,
        is_cancel_reason_addressable,
        last_cancelled_at as occurred_at
    from lifecycle
    where is_cancelled and last_cancelled_at is not null

),

all_triggers as (

    select * from segment_triggers
    union all
    select * from abandon_triggers
    union all
    select * from episode_triggers
    union all
    select * from risk_triggers
    union all
    select * from cancel_triggers

),

detected as (

    select
        {{ dbt.hash(dbt.concat([
            'all_triggers.user_id', "'|'", 'all_triggers.scenario', "'|'",
            'all_triggers.subject_id'
        ])) }} as trigger_id,
        all_triggers.*,
        as_of.as_of_at as fired_at,
        contacts.user_id is null as is_suppressed
    from all_triggers
    inner join eligible_users
        on all_triggers.user_id = eligible_users.user_id
    cross join as_of
    left join contacts
        on all_triggers.user_id = contacts.user_id
    left join live_fired
        on {{ dbt.hash(dbt.concat([
            'all_triggers.user_id', "'|'", 'all_triggers.scenario', "'|'",
            'all_triggers.subject_id'
        ])) }} = live_fired.trigger_id
    where
        -- fired live already: the live row is the ledger's (live_new below)
        live_fired.trigger_id is null
        and all_triggers.occurred_at <= as_of.as_of_at
        and all_triggers.occurred_at
        > {{ ottp.shift_timestamp('day', -window_days, 'as_of.as_of_at') }}

),

new_detected as (

    select detected.*
    from detected
    {% if is_incremental() %}
    left join {{ this }} as fired
        on detected.trigger_id = fired.trigger_id
    where fired.trigger_id is null
    {% endif %}

),

-- The live-fired triggers not in the ledger yet, whatever their age: they fired.
new_live as (

    select live_fired.*
    from live_fired
    {% if is_incremental() %}
    left join {{ this }} as fired
        on live_fired.trigger_id = fired.trigger_id
    where fired.trigger_id is null
    {% endif %}

),

new_triggers as (

    select
        trigger_id,
        user_id,
        scenario,
        subject_type,
        subject_id,
        subject_name,
        category,
        cancel_reason,
        cancel_reason_description,
        is_cancel_reason_addressable,
        is_suppressed,
        occurred_at,
        fired_at
    from new_detected
    union all
    select
        trigger_id,
        user_id,
        scenario,
        subject_type,
        subject_id,
        subject_name,
        category,
        cancel_reason,
        cancel_reason_description,
        is_cancel_reason_addressable,
        is_suppressed,
        occurred_at,
        fired_at
    from new_live

),

final as (

    select
        -- ids
        trigger_id,
        user_id,

        -- descriptive
        scenario,
        subject_type,
        subject_id,
        subject_name,
        category,
        cancel_reason,
        cancel_reason_description,

        -- booleans
        is_cancel_reason_addressable,
        is_suppressed,

        -- timestamps
        occurred_at,
        fired_at

    from new_triggers

)

select * from final
