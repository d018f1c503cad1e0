{#- delete+insert on Spark. Parquet tables have no row-level delete (merge
    needs Delta or Iceberg, whose jars are not on PyPI), so the incremental
    models' strategy is done as a rewrite: the kept rows (those whose
    unique_key is not in the new batch) plus the batch go to a new table that
    then replaces the old one. It costs a pass over the table; rows and keys
    come out exactly as delete+insert leaves them on DuckDB and PostgreSQL.
    These override dbt-spark's two macros of the same name (the root project
    wins; its package cannot be named from here), so they repeat its handling
    of append, insert_overwrite and merge. Microbatch is not offered. -#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
    {%- if raw_strategy == 'delete+insert' and file_format != 'parquet' -%}
        {{ exceptions.raise_compiler_error(
            "delete+insert is implemented for parquet tables on Spark; for "
            ~ file_format ~ " use the merge strategy") }}
    {%- endif -%}
    {%- if raw_strategy not in ['append', 'merge', 'insert_overwrite', 'delete+insert'] -%}
        {{ exceptions.raise_compiler_error(
            "Invalid incremental strategy provided: " ~ raw_strategy
            ~ "; expected one of 'append', 'merge', 'insert_overwrite', 'delete+insert'") }}
    {%- endif -%}
    {%- if raw_strategy == 'merge' and file_format not in ['delta', 'iceberg', 'hudi'] -%}
        {{ exceptions.raise_compiler_error(
            "the merge strategy needs file_format delta, iceberg or hudi") }}
    {%- endif -%}
    {{ return(raw_strategy) }}
{% endmacro %}


{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- if strategy == 'append' -%}
        {{ return(get_insert_into_sql(source, target)) }}
    {%- elif strategy == 'insert_overwrite' -%}
        {{ return(get_insert_overwrite_sql(source, target, existing)) }}
    {%- elif strategy == 'merge' -%}
        {{ return(get_merge_sql(target, source, unique_key, dest_columns=none,
                                incremental_predicates=incremental_predicates)) }}
    {%- endif -%}
    {%- if unique_key is none or unique_key is not string -%}
        {{ exceptions.raise_compiler_error("delete+insert on Spark takes one unique_key column") }}
    {%- endif -%}
    {%- set rebuilt = target.incorporate(path={"identifier": target.identifier ~ "__dbt_rebuilt"}) -%}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
    {%- do run_query("drop table if exists " ~ rebuilt) -%}
    {%- call statement('delete_insert_rebuild') -%}
        create table {{ rebuilt }} using parquet as
        select {{ columns }}
        from {{ target }} as kept
        left anti join (select distinct {{ unique_key }} from {{ source }}) as batch
            on kept.{{ unique_key }} = batch.{{ unique_key }}
        union all
        select {{ columns }} from {{ source }}
    {%- endcall -%}
    {%- do run_query("drop table " ~ target) -%}
    alter table {{ rebuilt }} rename to {{ target }}
{% endmacro %}
