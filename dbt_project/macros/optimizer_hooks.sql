{#- DuckDB (2.x) stores a subplan that several CTEs share, here the scan of
    ten million events, even where re-reading it with each CTE's own filter is
    far cheaper; an incremental run then costs as much as a full one. The
    incremental models turn that optimizer off for their own statement.
    Other engines: no-op. -#}
{% macro disable_shared_subplans() -%}
    {{ return(adapter.dispatch('disable_shared_subplans', 'ottp')()) }}
{%- endmacro %}

{% macro default__disable_shared_subplans() -%}
    select 1
{%- endmacro %}

{% macro duckdb__disable_shared_subplans() -%}
    {%- if execute and ottp._duckdb_has_optimizer('common_subplan') -%}
        set disabled_optimizers = 'common_subplan'
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro restore_shared_subplans() -%}
    {{ return(adapter.dispatch('restore_shared_subplans', 'ottp')()) }}
{%- endmacro %}

{% macro default__restore_shared_subplans() -%}
    select 1
{%- endmacro %}

{% macro duckdb__restore_shared_subplans() -%}
    reset disabled_optimizers
{%- endmacro %}

{% macro _duckdb_has_optimizer(name) -%}
    {%- set found = run_query(
        "select count(*) from duckdb_optimizers() where name = '" ~ name ~ "'"
    ) -%}
    {{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}
