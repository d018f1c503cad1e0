{#- Small cross-engine helpers the dbt.* cross-database macros do not cover.
    Each dispatches, so an adapter (Spark, Trino ...) adds its own spelling. -#}

{#- Seconds since the Unix epoch, fractional, as a float. -#}
{% macro epoch_s(timestamp) -%}
    {{ return(adapter.dispatch('epoch_s', 'ottp')(timestamp)) }}
{%- endmacro %}

{% macro default__epoch_s(timestamp) -%}
    cast(extract(epoch from {{ timestamp }}) as {{ dbt.type_float() }})
{%- endmacro %}

{% macro duckdb__epoch_s(timestamp) -%}
    epoch({{ timestamp }})
{%- endmacro %}

{% macro spark__epoch_s(timestamp) -%}
    cast(unix_micros({{ timestamp }}) as double) / 1000000
{%- endmacro %}

{#- Fractional seconds from one timestamp to a later one. -#}
{% macro seconds_between(start, end) -%}
    ({{ ottp.epoch_s(end) }} - {{ ottp.epoch_s(start) }})
{%- endmacro %}

{#- A ratio as a float; null when the denominator is zero or null. -#}
{% macro safe_ratio(numerator, denominator) -%}
    (
        cast({{ numerator }} as {{ dbt.type_float() }})
        / nullif(cast({{ denominator }} as {{ dbt.type_float() }}), 0)
    )
{%- endmacro %}

{#- 1 when the condition holds, else 0: sums and averages of booleans
    without engine-specific boolean aggregates. -#}
{% macro flag(condition) -%}
    case when {{ condition }} then 1 else 0 end
{%- endmacro %}
