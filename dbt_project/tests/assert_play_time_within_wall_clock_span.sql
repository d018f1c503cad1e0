-- Play time never exceeds the wall-clock span of its playback.
{{ config(meta={'model_logic': true}) }}
select
    playback_id,
    played_s,
    {{ ottp.seconds_between('started_at', 'ended_at') }} as span_s
from {{ ref('int_plays') }}
where played_s > {{ ottp.seconds_between('started_at', 'ended_at') }} + 0.001
