-- Nothing is dropped between raw and staging: every raw event is in exactly
-- one event staging model or in the quarantine. Returns the totals when they
-- do not add up. Like the staging tests, a partitioned run counts its
-- landing days only (macros/test_window.sql); a full build counts every row.
{{ config(meta={'model_logic': true}) }}
{%- set in_window = ottp.landing_window(source('raw', 'events')) %}
with

raw_events as (

    select count(*) as row_count from {{ source('raw', 'events') }}
    where {{ in_window }}

),

staged as (

    {% for model in ottp.event_families() -%}
    select count(*) as row_count from {{ ref(model) }}
    where {{ in_window }}
    {% if not loop.last %}union all
    {% endif -%}
    {%- endfor %}

),

quarantined as (

    select count(*) as row_count from {{ ref('stg_quarantined_events') }}
    where {{ in_window }}

),

totals as (

    select
        (select row_count from raw_events) as raw_rows,
        (select sum(row_count) from staged) as staged_rows,
        (select row_count from quarantined) as quarantined_rows

)

select *
from totals
where raw_rows <> staged_rows + quarantined_rows
