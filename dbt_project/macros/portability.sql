{#- Small cross-engine helpers the dbt.* cross-database macros do not cover.
    Each dispatches, so an adapter (Spark, Trino ...) adds its own spelling. -#}

{#- An 8-byte float (dbt.type_float() is 4 bytes on DuckDB). -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'ottp')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}

{% macro spark__type_double() -%}
    double
{%- endmacro %}

{#- Seconds since the Unix epoch, fractional, as a double. -#}
{% macro epoch_s(timestamp) -%}
    {{ return(adapter.dispatch('epoch_s', 'ottp')(timestamp)) }}
{%- endmacro %}

{% macro default__epoch_s(timestamp) -%}
    cast(extract(epoch from {{ timestamp }}) as {{ ottp.type_double() }})
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

{#- A ratio as a double; null when the denominator is zero or null. -#}
{% macro safe_ratio(numerator, denominator) -%}
    (
        cast({{ numerator }} as {{ ottp.type_double() }})
        / nullif(cast({{ denominator }} as {{ ottp.type_double() }}), 0)
    )
{%- endmacro %}

{#- 1 when the condition holds, else 0: sums and averages of booleans
    without engine-specific boolean aggregates. -#}
{% macro flag(condition) -%}
    case when {{ condition }} then 1 else 0 end
{%- endmacro %}

{#- A timestamp before any event. -#}
{% macro epoch_start() -%}
    cast('1970-01-01 00:00:00' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{#- Microseconds since the Unix epoch as a bigint (exact, same digits on every engine). -#}
{% macro epoch_us(timestamp) -%}
    {{ return(adapter.dispatch('epoch_us', 'ottp')(timestamp)) }}
{%- endmacro %}

{% macro default__epoch_us(timestamp) -%}
    cast(extract(epoch from {{ timestamp }}) * 1000000 as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro duckdb__epoch_us(timestamp) -%}
    epoch_us({{ timestamp }})
{%- endmacro %}

{% macro spark__epoch_us(timestamp) -%}
    unix_micros({{ timestamp }})
{%- endmacro %}

{#- Aggregate: the first non-null value in the given order (a list of
    expressions; end it with a unique one where ties must not matter). -#}
{% macro first_by(value, order_by) -%}
    {{ return(adapter.dispatch('first_by', 'ottp')(value, order_by)) }}
{%- endmacro %}

{% macro default__first_by(value, order_by) -%}
    (array_agg({{ value }} order by {{ order_by | join(', ') }})
        filter (where {{ value }} is not null))[1]
{%- endmacro %}

{% macro duckdb__first_by(value, order_by) -%}
    arg_min({{ value }}, {% if order_by | length == 1 %}{{ order_by[0] }}{% else %}({{ order_by | join(', ') }}){% endif %})
{%- endmacro %}

{% macro spark__first_by(value, order_by) -%}
    min_by({{ value }}, struct({{ order_by | join(', ') }}))
{%- endmacro %}

{#- Put after "name as" in a CTE that several others read, where re-reading
    its (cheap, filtered) source beats storing all its rows: DuckDB would
    otherwise materialize it. Engines without the hint inline as they see fit. -#}
{% macro inline_cte() -%}
    {{ return(adapter.dispatch('inline_cte', 'ottp')()) }}
{%- endmacro %}

{% macro default__inline_cte() -%}
{%- endmacro %}

{% macro duckdb__inline_cte() -%}
    not materialized
{%- endmacro %}

{% macro postgres__inline_cte() -%}
    not materialized
{%- endmacro %}

{#- Aggregate: the last non-null value in the given order. -#}
{% macro last_by(value, order_by) -%}
    {{ return(adapter.dispatch('last_by', 'ottp')(value, order_by)) }}
{%- endmacro %}

{% macro default__last_by(value, order_by) -%}
    (array_agg({{ value }} order by {{ order_by | join(' desc, ') }} desc)
        filter (where {{ value }} is not null))[1]
{%- endmacro %}

{% macro duckdb__last_by(value, order_by) -%}
    arg_max({{ value }}, {% if order_by | length == 1 %}{{ order_by[0] }}{% else %}({{ order_by | join(', ') }}){% endif %})
{%- endmacro %}

{% macro spark__last_by(value, order_by) -%}
    max_by({{ value }}, struct({{ order_by | join(', ') }}))
{%- endmacro %}

{#- A timestamp moved by a number of days or seconds. Spark's dbt.dateadd goes
    through whole Unix seconds (sub-second digits lost) and fails on a null
    input (assert_not_null); timestampadd keeps microseconds and nulls. -#}
{% macro shift_timestamp(datepart, interval, from_timestamp) -%}
    {{ return(adapter.dispatch('shift_timestamp', 'ottp')(datepart, interval, from_timestamp)) }}
{%- endmacro %}

{% macro default__shift_timestamp(datepart, interval, from_timestamp) -%}
    {{ dbt.dateadd(datepart, interval, from_timestamp) }}
{%- endmacro %}

{% macro spark__shift_timestamp(datepart, interval, from_timestamp) -%}
    timestampadd({{ datepart | upper }}, {{ interval }}, {{ from_timestamp }})
{%- endmacro %}

{#- Whole days from one timestamp's date to another's (date boundaries
    crossed); null when either is null. Spark's dbt.datediff raises on null. -#}
{% macro days_between(first_timestamp, second_timestamp) -%}
    {{ return(adapter.dispatch('days_between', 'ottp')(first_timestamp, second_timestamp)) }}
{%- endmacro %}

{% macro default__days_between(first_timestamp, second_timestamp) -%}
    {{ dbt.datediff(first_timestamp, second_timestamp, 'day') }}
{%- endmacro %}

{% macro spark__days_between(first_timestamp, second_timestamp) -%}
    datediff(cast({{ second_timestamp }} as date), cast({{ first_timestamp }} as date))
{%- endmacro %}

{#- Aggregate: the non-null values joined with a delimiter in the given order
    (order_by: a list of expressions); null when there are none. Spark's
    dbt.listagg ignores the order and returns '' for no values. -#}
{% macro ordered_listagg(measure, delimiter_text, order_by) -%}
    {{ return(adapter.dispatch('ordered_listagg', 'ottp')(measure, delimiter_text, order_by)) }}
{%- endmacro %}

{% macro default__ordered_listagg(measure, delimiter_text, order_by) -%}
    {{ dbt.listagg(measure, delimiter_text, 'order by ' ~ (order_by | join(', '))) }}
{%- endmacro %}

{% macro spark__ordered_listagg(measure, delimiter_text, order_by) -%}
    nullif(
        array_join(
            transform(
                array_sort(
                    filter(
                        collect_list(named_struct(
                            {%- for expression in order_by %}
                            'k{{ loop.index }}', {{ expression }},
                            {%- endfor %}
                            'value', cast({{ measure }} as string)
                        )),
                        item -> item.value is not null
                    )
                ),
                item -> item.value
            ),
            {{ delimiter_text }}
        ),
        ''
    )
{%- endmacro %}


{#- The sum of a 64-bit hash of each row's values: an order-free fingerprint
    of a set of rows, which changes when any row is added, removed or changed
    (up to hash collisions). Each value is hashed with whether it is null, as
    the row hash does; the sum is a decimal, so it never overflows. -#}
{% macro hash_sum(values) -%}
    {{ return(adapter.dispatch('hash_sum', 'ottp')(values)) }}
{%- endmacro %}

{% macro default__hash_sum(values) -%}
    sum(cast(('x' || left(md5(
        {%- for v in values %}coalesce(length(cast({{ v }} as text)) || ':' || cast({{ v }} as text), '-')
        {%- if not loop.last %} || {% endif %}{% endfor -%}
    ), 16))::bit(64)::bigint as decimal(38, 0)))
{%- endmacro %}

{% macro duckdb__hash_sum(values) -%}
    sum(cast(hash({% for v in values %}{{ v }}, {{ v }} is null{% if not loop.last %}, {% endif %}{% endfor %}) as decimal(38, 0)))
{%- endmacro %}

{% macro spark__hash_sum(values) -%}
    sum(cast(xxhash64({% for v in values %}{{ v }}, {{ v }} is null{% if not loop.last %}, {% endif %}{% endfor %}) as decimal(38, 0)))
{%- endmacro %}


{#- A sum and an average of a double that do not depend on the order the rows
    are added in (summed as a decimal of the given scale, exactly, then made a
    double again): the same group gives the same bits whether it is
    aggregated alone or among all the others, so an incremental run that
    recomputes some days equals a full refresh. -#}
{% macro exact_sum(value, scale=6) -%}
    cast(sum(cast({{ value }} as decimal(38, {{ scale }}))) as {{ ottp.type_double() }})
{%- endmacro %}

{% macro exact_avg(value, scale=12) -%}
    ({{ ottp.exact_sum(value, scale) }} / nullif(count({{ value }}), 0))
{%- endmacro %}
