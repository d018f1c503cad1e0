{#- Every non-null value lies within [min_value, max_value] (either bound optional). -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none) %}
{%- set out_of_range = ['false'] -%}
{%- if min_value is not none -%}
    {%- do out_of_range.append(column_name ~ ' < ' ~ min_value) -%}
{%- endif -%}
{%- if max_value is not none -%}
    {%- do out_of_range.append(column_name ~ ' > ' ~ max_value) -%}
{%- endif %}

select {{ column_name }}
from {{ model }}
where
    {{ column_name }} is not null
    and ({{ out_of_range | join(' or ') }})

{% endtest %}
