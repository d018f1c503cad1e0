{#- Retention curve columns: the share of plays whose furthest position
    reached each 10% of the title. -#}
{% macro retention_curve_columns(furthest_pct_column, reached_end_column) -%}
    {%- for step in range(1, 10) %}
    avg(case when {{ furthest_pct_column }} >= {{ step / 10 }} then 1.0 else 0.0 end)
        as retention_{{ step * 10 }}_pct,
    {%- endfor %}
    avg(case when {{ reached_end_column }} then 1.0 else 0.0 end) as retention_100_pct
{%- endmacro %}
