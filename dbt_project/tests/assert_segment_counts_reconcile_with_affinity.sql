-- Every affinity row has one segment row, and per category the number of
-- users in each segment equals the affinity rows whose titles_watched falls
-- in that segment's band of the seed (from its threshold to the next one).
with

affinity as (

    select * from {{ ref('user_category_affinity') }}

),

segments as (

    select * from {{ ref('user_category_segments') }}

),

thresholds as (

    select * from {{ ref('segment_thresholds') }}

),

bands as (

    select
        segment,
        min_titles_watched as band_from,
        lead(min_titles_watched) over (order by min_titles_watched) as band_to
    from thresholds

    union all

    select
        'casual' as segment,
        0 as band_from,
        min(min_titles_watched) as band_to
    from thresholds

),

expected as (

    select
        affinity.category,
        bands.segment,
        count(*) as user_count
    from affinity
    inner join bands
        on
            affinity.titles_watched >= bands.band_from
            and (bands.band_to is null or affinity.titles_watched < bands.band_to)
    group by affinity.category, bands.segment

),

actual as (

    select
        category,
        segment,
        count(*) as user_count
    from segments
    group by category, segment

),

totals as (

    select
        (select count(*) from affinity) as affinity_rows,
        (select count(*) from segments) as segment_rows

)

select
    coalesce(expected.category, actual.category) as category,
    coalesce(expected.segment, actual.segment) as segment,
    expected.user_count as expected_count,
    actual.user_count as actual_count
from expected
full outer join actual
    on
        expected.category = actual.category
        and expected.segment = actual.segment
where
    expected.user_count is null
    or actual.user_count is null
    or expected.user_count <> actual.user_count

union all

select
    'all' as category,
    'all' as segment,
    affinity_rows as expected_count,
    segment_rows as actual_count
from totals
where affinity_rows <> segment_rows
