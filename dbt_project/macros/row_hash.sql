{#- The row hash the CRM sync compares to find changed rows (ottp.crm.contract.row_hash_sql,
    docs/crm-exports.md): over every other contract column of the calling export model (its
    yml, in order), empty text as null (as the sync sends it), each value followed by whether
    it is null. One definition for the four export models. -#}
{% macro row_hash() -%}
    {%- set hashed = [] %}
    {%- for column in model.columns.values() if column.name != '_row_hash' %}
        {%- if column.data_type in ('text', 'string') %}
            {%- do hashed.append("nullif(" ~ column.name ~ ", '')") %}
        {%- else %}
            {%- do hashed.append(column.name) %}
        {%- endif %}
    {%- endfor %}
    {%- if target.type == 'postgres' -%}
        ('x' || left(md5(
        {%- for v in hashed %}coalesce(length(cast({{ v }} as text)) || ':' || cast({{ v }} as text), '-')
        {%- if not loop.last %} || {% endif %}{% endfor -%}
        ), 16))::bit(64)::bigint
    {%- elif target.type == 'spark' -%}
        xxhash64({% for v in hashed %}{{ v }}, {{ v }} is null{% if not loop.last %}, {% endif %}{% endfor %})
    {%- else -%}
        cast(hash({% for v in hashed %}{{ v }}, {{ v }} is null{% if not loop.last %}, {% endif %}{% endfor %}) >> 1 as bigint)
    {%- endif %}
{%- endmacro %}
