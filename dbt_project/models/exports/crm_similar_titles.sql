-- "More like this" lists for title pages and e-mails, as ranked by the
-- recommender, with the similar title's name.
with

similar_titles as (

    select * from {{ source('ml', 'similar_titles') }}

),

titles as (

    select * from {{ ref('titles') }}

),

final as (

    select
        -- ids
        similar_titles.title_id,
        similar_titles.rank,
        similar_titles.similar_title_id,

        -- descriptive
        titles.title_name as similar_title_name,
        cast(similar_titles.score as {{ ottp.type_double() }}) as score

    from similar_titles
    left join titles
        on similar_titles.similar_title_id = titles.title_id

),

-- The export contract's types on every engine (enforced: _exports__models.yml).
contracted as (

    select
        cast(title_id as {{ dbt.type_string() }}) as title_id,
        cast(rank as {{ dbt.type_bigint() }}) as rank,
        cast(similar_title_id as {{ dbt.type_string() }}) as similar_title_id,
        cast(similar_title_name as {{ dbt.type_string() }}) as similar_title_name,
        cast(score as {{ ottp.type_double() }}) as score
    from final

),

-- The row hash the sync compares to find changed rows (ottp.crm.contract.row_hash_sql,
-- docs/crm-exports.md): over every other contract column in order, empty text as
-- null (as the sync sends it), each value followed by whether it is null.
{%- set hashed = [] %}
{%- for column in model.columns.values() if column.name != '_row_hash' %}
    {%- if column.data_type in ('text', 'string') %}
        {%- do hashed.append("nullif(" ~ column.name ~ ", '')") %}
    {%- else %}
        {%- do hashed.append(column.name) %}
    {%- endif %}
{%- endfor %}
hashed as (

    select
        *,
        {% if target.type == 'postgres' -%}
        ('x' || left(md5(
            {%- for v in hashed %}coalesce(length(cast({{ v }} as text)) || ':' || cast({{ v }} as text), '-')
            {%- if not loop.last %} || {% endif %}{% endfor -%}
        ), 16))::bit(64)::bigint
        {%- elif target.type == 'spark' -%}
        xxhash64({% for v in hashed %}{{ v }}, {{ v }} is null{% if not loop.last %}, {% endif %}{% endfor %})
        {%- else -%}
        cast(hash({% for v in hashed %}{{ v }}, {{ v }} is null{% if not loop.last %}, {% endif %}{% endfor %}) >> 1 as bigint)
        {%- endif %} as _row_hash
    from contracted

)

select * from hashed
