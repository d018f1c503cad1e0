-- "Viewers of X watch Y next": for each user, the next different title they
-- played validly after a viewing of X, in the same session or within
-- next_up_window_hours of it. Every viewing anchors: the window starts at the
-- end of the user's latest valid play of X before Y, so a rewatch of X
-- followed by Y counts. Over all such transitions: support = share of all
-- transitions, confidence = share of X's transitions that go to Y, lift =
-- confidence / share of all transitions that go to Y.
with

plays as (

    select * from {{ ref('plays') }}

),

titles as (

    select * from {{ ref('titles') }}

),

-- Each valid play with the user's next one; back-to-back plays of one title
-- (resuming or rewatching it) are left out below, so only the last play of X
-- before another title pairs, from its own end.
pairs as (

    select
        user_id,
        session_id as from_session_id,
        title_id as from_title_id,
        ended_at as from_ended_at,
        lead(session_id) over next_play as to_session_id,
        lead(title_id) over next_play as to_title_id,
        lead(started_at) over next_play as to_started_at
    from plays
    where is_valid_play
    window next_play as (partition by user_id order by started_at, playback_id)

),

transitions as (

    select
        *,
        {{ ottp.flag('from_session_id = to_session_id') }} as is_same_session
    from pairs
    where
        to_title_id is not null
        and to_title_id <> from_title_id
        and (
            from_session_id = to_session_id
            or {{ ottp.seconds_between('from_ended_at', 'to_started_at') }}
            <= {{ var('next_up_window_hours') * 3600 }}
        )

),

counted as (

    select
        from_title_id,
        to_title_id,
        count(*) as transition_count,
        count(distinct user_id) as viewer_count,
        sum(is_same_session) as same_session_count
    from transitions
    group by from_title_id, to_title_id

),

totals as (

    select
        *,
        sum(transition_count) over () as all_transition_count,
        sum(transition_count) over (partition by from_title_id) as from_transition_count,
        sum(transition_count) over (partition by to_title_id) as to_transition_count
    from counted

),

final as (

    select
        -- ids
        totals.from_title_id,
        totals.to_title_id,

        -- numerics
        totals.transition_count,
        totals.viewer_count,
        totals.same_session_count,
        {{ ottp.safe_ratio('totals.transition_count', 'totals.all_transition_count') }}
            as support,
        {{ ottp.safe_ratio('totals.transition_count', 'totals.from_transition_count') }}
            as confidence,
        {{ ottp.safe_ratio(
            'totals.transition_count * totals.all_transition_count',
            'totals.from_transition_count * totals.to_transition_count'
        ) }} as lift,
        row_number() over (
            partition by totals.from_title_id
            order by totals.transition_count desc, totals.viewer_count desc, totals.to_title_id asc
        ) as next_rank,

        -- booleans
        coalesce(
            from_titles.series_id is not null
            and from_titles.series_id = to_titles.series_id,
            false
        ) as is_same_series

    from totals
    inner join titles as from_titles
        on totals.from_title_id = from_titles.title_id
    inner join titles as to_titles
        on totals.to_title_id = to_titles.title_id

)

select * from final
