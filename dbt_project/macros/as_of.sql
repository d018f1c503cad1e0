{#- The "today" of the marts as a scalar subquery. The as_of var pins it (a
    timestamp such as '2026-10-31 23:59:59'); null means the end of the latest
    activity in the data (int_as_of), so a rebuild on the same data gives the
    same marts. -#}
{% macro as_of_at() -%}
    (select as_of_at from {{ ref('int_as_of') }})
{%- endmacro %}
