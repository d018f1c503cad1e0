{#- A model's not-null columns, checked in one scan and one dbt node: a node per
    column would cost dbt its per-node overhead (tens of ms) once per column, on
    every build. Returns one row per column that holds nulls; the failure count
    is the number of null cells. -#}
{% test not_null_columns(model, columns) %}
{{ config(fail_calc = 'coalesce(sum(null_rows), 0)') }}
{%- if not columns -%}
    {{ exceptions.raise_compiler_error("not_null_columns needs at least one column") }}
{%- endif %}

with null_counts as (
    select
        {% for column in columns -%}
        sum(case when {{ column }} is null then 1 else 0 end) as nulls_{{ loop.index }}
        {%- if not loop.last %},{% endif %}
        {% endfor %}
    from {{ model }}
)
{% for column in columns %}
select '{{ column }}' as null_column, nulls_{{ loop.index }} as null_rows
from null_counts
where nulls_{{ loop.index }} > 0
{% if not loop.last %}union all{% endif %}
{% endfor %}

{% endtest %}
