{#- The landing days a partitioned run was asked to (re)process. Dagster passes
    min_date and max_date (YYYY-MM-DD, max exclusive) for the selected daily
    partitions; an incremental model then rebuilds, besides what the loaded_at
    watermark selects, everything whose occurred_at falls in that window, even
    past the lookback. Without the vars the window is empty. -#}
{% macro partition_window(column) -%}
    {%- set min_date = var('min_date', none) -%}
    {%- set max_date = var('max_date', none) -%}
    {%- if min_date is none and max_date is none -%}
        (1 = 0)
    {%- else -%}
        {%- if min_date is none or max_date is none -%}
            {{ exceptions.raise_compiler_error(
                "min_date and max_date go together; got min_date=" ~ min_date
                ~ ", max_date=" ~ max_date) }}
        {%- endif -%}
        {%- set pattern = modules.re.compile('^[0-9]{4}-[0-9]{2}-[0-9]{2}$') -%}
        {%- for value in [min_date, max_date] -%}
            {%- if not pattern.match(value | string) -%}
                {{ exceptions.raise_compiler_error(
                    "min_date/max_date must be YYYY-MM-DD; got " ~ value) }}
            {%- endif -%}
        {%- endfor -%}
        {%- if (min_date | string) >= (max_date | string) -%}
            {{ exceptions.raise_compiler_error(
                "min_date must be before max_date; got " ~ min_date ~ " .. " ~ max_date) }}
        {%- endif -%}
        (
            {{ column }} >= cast('{{ min_date }} 00:00:00' as {{ dbt.type_timestamp() }})
            and {{ column }} < cast('{{ max_date }} 00:00:00' as {{ dbt.type_timestamp() }})
        )
    {%- endif -%}
{%- endmacro %}
