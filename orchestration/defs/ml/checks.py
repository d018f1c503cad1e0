"""What the recommendations' check counts: rows that break an exclusion or whose reason
the marts do not bear out (the recommendations asset reports it as its check)."""

import duckdb

from ml import warehouse as wh


def exclusion_violations(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        "watched_or_disliked": wh.scalar(
            con,
            """
            select count(*) from ml.recommendations as r
            semi join ml.training_interactions as i
                on r.user_id = i.user_id and r.title_id = i.title_id and i.is_excluded
        """,
        ),
        "unavailable_or_unknown": wh.scalar(
            con,
            """
            select count(*) from ml.recommendations as r
            left join marts.titles as t on r.title_id = t.title_id
            where not coalesce(t.is_available, false)
        """,
        ),
        "completed": wh.scalar(
            con,
            """
            select count(*) from ml.recommendations as r
            semi join marts.plays as p
                on r.user_id = p.user_id and r.title_id = p.title_id and p.is_complete
        """,
        ),
        "reason_not_true": wh.scalar(con, REASON_NOT_TRUE_SQL),
    }


# A reason that names a title must say what the user did with it, in the words the
# recommender uses, and the marts must agree: a valid play for 'watched', a like for
# 'liked', that rating for 'rated'. A reason without a title names no kind.
REASON_NOT_TRUE_SQL = """
select count(*)
from ml.recommendations as r
left join marts.titles as t on r.reason_title_id = t.title_id
left join marts.user_title_interests as i
    on r.user_id = i.user_id and r.reason_title_id = i.title_id
where
    (r.reason_title_id is null) <> (r.reason_kind is null)
    or (
        r.reason_kind is not null
        and (
            r.reason is distinct from 'Because you ' || r.reason_kind || ' ' || t.title_name
                || case when r.reason_kind = 'rated'
                    then ' ' || cast(i.rating as varchar) || '/5' else '' end
            or case r.reason_kind
                when 'watched' then not exists (
                    select 1 from marts.plays as p
                    where p.user_id = r.user_id and p.title_id = r.reason_title_id
                        and p.is_valid_play
                )
                when 'liked' then not coalesce(i.is_liked, false)
                when 'rated' then i.rating is null
                else true
            end
        )
    )
"""
