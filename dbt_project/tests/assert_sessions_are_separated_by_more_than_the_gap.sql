-- An actor's sessions never overlap, and each starts more than
-- session_gap_minutes after the previous one ended.
{{ config(meta={'model_logic': true}) }}
with

sessions as (

    select
        actor_id,
        session_id,
        started_at,
        ended_at,
        lag(ended_at) over (
            partition by actor_id order by started_at
        ) as previous_ended_at
    from {{ ref('int_sessions') }}

)

select *
from sessions
where
    previous_ended_at is not null
    and {{ ottp.seconds_between('previous_ended_at', 'started_at') }}
    <= {{ var('session_gap_minutes') * 60 }}
