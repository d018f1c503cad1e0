-- Every valid play in the marts started inside one of the marts' sessions,
-- of the same user.
select
    plays.playback_id,
    plays.session_id
from {{ ref('plays') }} as plays
left join {{ ref('sessions') }} as sessions
    on plays.session_id = sessions.session_id
where
    plays.is_valid_play
    and (
        sessions.session_id is null
        or sessions.user_id <> plays.user_id
        or plays.started_at < sessions.started_at
        or plays.started_at > sessions.ended_at
    )
