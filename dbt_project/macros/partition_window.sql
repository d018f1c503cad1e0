{#- The landing days a partitioned run was asked to (re)process, as
    [min_date, max_date] (YYYY-MM-DD, max exclusive), or [none, none].

    Dagster passes them as the environment variables OTTP_MIN_DATE and
    OTTP_MAX_DATE, read at execution time only: dbt records env_var() calls made
    while parsing and vars given with --vars, and either would force a full
    re-parse of the project on every new day. The vars min_date/max_date, when
    given (on the command line, or as null in a unit test's overrides), take
    precedence. -#}
{% macro window_bounds() -%}
    {%- if var.has_var('min_date') or var.has_var('max_date') -%}
        {%- set bounds = [var('min_date', none), var('max_date', none)] -%}
    {%- elif execute -%}
        {%- set bounds = [env_var('OTTP_MIN_DATE', '') or none,
                          env_var('OTTP_MAX_DATE', '') or none] -%}
    {%- else -%}
        {%- set bounds = [none, none] -%}
    {%- endif -%}
    {%- set min_date, max_date = bounds -%}
    {%- set names = "min_date/max_date (vars) or OTTP_MIN_DATE/OTTP_MAX_DATE (environment)" -%}
    {%- if min_date is none and max_date is none -%}
        {%- do return([none, none]) -%}
    {%- endif -%}
    {%- if min_date is none or max_date is none -%}
        {{ exceptions.raise_compiler_error(
            names ~ " go together; got " ~ min_date ~ " and " ~ max_date) }}
    {%- endif -%}
    {%- set pattern = modules.re.compile('^[0-9]{4}-[0-9]{2}-[0-9]{2}$') -%}
    {%- for value in bounds -%}
        {%- if not pattern.match(value | string) -%}
            {{ exceptions.raise_compiler_error(
                names ~ " must be YYYY-MM-DD; got " ~ value) }}
        {%- endif -%}
    {%- endfor -%}
    {%- if (min_date | string) >= (max_date | string) -%}
        {{ exceptions.raise_compiler_error(
            names ~ ": the first must be before the second; got "
            ~ min_date ~ " .. " ~ max_date) }}
    {%- endif -%}
    {%- do return([min_date | string, max_date | string]) -%}
{%- endmacro %}


{#- An incremental model rebuilds, besides what the loaded_at watermark
    selects, everything whose occurred_at falls in the window, even past the
    lookback. Without a window it is empty. -#}
{% macro partition_window(column) -%}
    {%- set min_date, max_date = ottp.window_bounds() -%}
    {%- if min_date is none -%}
        (1 = 0)
    {%- else -%}
        (
            {{ column }} >= cast('{{ min_date }} 00:00:00' as {{ dbt.type_timestamp() }})
            and {{ column }} < cast('{{ max_date }} 00:00:00' as {{ dbt.type_timestamp() }})
        )
    {%- endif -%}
{%- endmacro %}


{#- The two CTEs that open an incremental model over events, as
    "previous_run as (...), new_events as (...)": previous_run holds the
    loaded_at watermark and the lookback start of {{ this }}; new_events has,
    per key, the earliest event loaded since the watermark (within the
    lookback) or on the days a partitioned run asked for (partition_window).
    events: a relation or CTE with the key, occurred_at and loaded_at. -#}
{% macro incremental_new_events(events, key) -%}
previous_run as (

    -- an empty table (nothing processed yet) takes every event
    select
        coalesce(max(loaded_at), {{ ottp.epoch_start() }}) as loaded_at_watermark,
        coalesce(
            {{ ottp.shift_timestamp('day', -var('incremental_lookback_days'), 'max(ended_at)') }},
            {{ ottp.epoch_start() }}
        ) as lookback_from
    from {{ this }}

),

new_events as (

    select
        {{ events }}.{{ key }},
        min({{ events }}.occurred_at) as first_new_at
    from {{ events }}
    cross join previous_run
    where
        (
            {{ events }}.loaded_at > previous_run.loaded_at_watermark
            and {{ events }}.occurred_at >= previous_run.lookback_from
        )
        -- days a partitioned run (a backfill) asked for, lookback or not
        or {{ ottp.partition_window(events ~ '.occurred_at') }}
    group by {{ events }}.{{ key }}

)
{%- endmacro %}
