{#- Tests of event-grain relations check only the landing days a partitioned
    run loaded. dbt_project.yml gives the staging tests the where marker
    __landing_window__; here it becomes partition_window(landing_date) when
    a window is given (window_bounds: a daily run, a backfill's range), and
    1 = 1 otherwise, so a build without a window (a full build) tests every
    row. A relation without a landing_date column is tested whole. Where
    configs cannot call project macros, hence the marker (dbt's documented
    way: overriding get_where_subquery). -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where and '__landing_window__' in where -%}
        {%- set where = where | replace('__landing_window__', ottp.landing_window(relation)) -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}


{% macro landing_window(relation) -%}
    {%- if not execute or ottp.window_bounds()[0] is none -%}
        (1 = 1)
    {%- else -%}
        {%- set columns = adapter.get_columns_in_relation(relation)
                          | map(attribute='name') | map('lower') | list -%}
        {%- if 'landing_date' in columns -%}
            {{ ottp.partition_window('landing_date') }}
        {%- else -%}
            (1 = 1)
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
