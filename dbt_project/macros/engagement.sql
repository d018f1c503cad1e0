{#- Retention curve columns: the share of plays whose furthest position
    reached each 10% of the title. Averages of integer flags: a decimal 1.0
    would average to 5 decimal digits on Spark. -#}
{% macro retention_curve_columns(furthest_pct_column, reached_end_column) -%}
    {%- for step in range(1, 10) %}
    avg({{ ottp.flag(furthest_pct_column ~ ' >= ' ~ (step / 10)) }})
        as retention_{{ step * 10 }}_pct,
    {%- endfor %}
    avg({{ ottp.flag(reached_end_column) }}) as retention_100_pct
{%- endmacro %}
