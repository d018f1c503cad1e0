-- Nothing is dropped between raw and staging: every raw event is in exactly
-- one event staging model or in the quarantine. Returns the totals when they
-- do not add up.
{{ config(meta={'model_logic': true}) }}
with

raw_events as (

    select count(*) as row_count from {{ source('raw', 'events') }}

),

staged as (

    {% for model in ottp.event_families() -%}
    select count(*) as row_count from {{ ref(model) }}
    {% if not loop.last %}union all
    {% endif -%}
    {%- endfor %}

),

quarantined as (

    select count(*) as row_count from {{ ref('stg_quarantined_events') }}

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
