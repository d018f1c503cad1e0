-- Sessions for BI and the recommender; likely bots are left out. A filter
-- over the incremental int_sessions, so a view (a table on Spark, whose
-- readers read its Parquet files).
{{ config(materialized=('table' if target.type == 'spark' else 'view')) }}

with

sessions as (

    select * from {{ ref('int_sessions') }}

),

final as (

    select
        -- ids
        session_id,
        user_id,
        device_id,

        -- descriptive
        platform,

        -- numerics
        event_count,
        page_view_count,
        title_click_count,
        search_count,
        play_start_count,
        interest_event_count,
        duration_s,

        -- booleans
        is_anonymous,

        -- timestamps
        started_at,
        ended_at,
        session_date

    from sessions
    where not is_likely_bot

)

select * from final
