-- Pauses of the plays in the marts (catalog titles, likely bots left out):
-- where in the title each viewer paused, and for how long. A view: its rows
-- are the incremental int_pauses, filtered by the plays mart (a table on
-- Spark, whose readers read its Parquet files).
{{ config(materialized=('table' if target.type == 'spark' else 'view')) }}

with

pauses as (

    select * from {{ ref('int_pauses') }}

),

plays as (

    select * from {{ ref('plays') }}

),

final as (

    select
        -- ids
        pauses.pause_id,
        pauses.playback_id,
        plays.session_id,
        pauses.user_id,
        pauses.title_id,
        pauses.device_id,

        -- descriptive
        pauses.platform,
        plays.category,

        -- numerics
        pauses.position_s,
        pauses.duration_s,
        pauses.position_pct,
        pauses.scene_start_s,
        pauses.paused_s,

        -- booleans
        pauses.is_resumed,

        -- timestamps
        pauses.paused_at,
        pauses.resumed_at,
        plays.play_date

    from pauses
    inner join plays
        on pauses.playback_id = plays.playback_id

)

select * from final
