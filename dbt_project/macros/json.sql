{#- Text of one top-level key of a JSON column; engines spell it differently. -#}
{% macro json_get_text(column, key) -%}
    {{ return(adapter.dispatch('json_get_text', 'ottp')(column, key)) }}
{%- endmacro %}

{% macro default__json_get_text(column, key) -%}
    ({{ column }} ->> '{{ key }}')
{%- endmacro %}

{% macro spark__json_get_text(column, key) -%}
    get_json_object({{ column }}, '$.{{ key }}')
{%- endmacro %}

{#- A list column as one comma-separated text value (portable for BI tools). -#}
{% macro list_to_text(column) -%}
    {{ return(adapter.dispatch('list_to_text', 'ottp')(column)) }}
{%- endmacro %}

{% macro default__list_to_text(column) -%}
    array_to_string({{ column }}, ',')
{%- endmacro %}

{% macro duckdb__list_to_text(column) -%}
    array_to_string({{ column }}, ',')
{%- endmacro %}

{% macro spark__list_to_text(column) -%}
    concat_ws(',', {{ column }})
{%- endmacro %}
