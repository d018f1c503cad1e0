{#
    The triggers the real-time server fired (raw.live_triggers, loaded from the
    trigger landing files by ottp.ingest.live_triggers), as a subquery with
    crm_trigger_log's columns (is_suppressed as fired, the live fired_at).
    Without the live path the table does not exist and the subquery is empty, so
    DuckDB, PostgreSQL and Spark builds without it keep working. Read through the
    catalog rather than declared as a source, like raw.deleted_users: it exists
    only where the live path ran, and a source would put an asset with no
    producer in Dagster's graph.
#}
{% macro live_triggers() -%}
    {%- set relation = none -%}
    {%- if execute -%}
        {%- set relation = adapter.get_relation(
            database=(none if target.type == 'spark' else target.database),
            schema='raw',
            identifier='live_triggers',
        ) -%}
    {%- endif -%}
    {%- if relation is not none -%}
        select
            cast(trigger_id as {{ dbt.type_string() }}) as trigger_id,
            cast(user_id as {{ dbt.type_string() }}) as user_id,
            cast(scenario as {{ dbt.type_string() }}) as scenario,
            cast(subject_type as {{ dbt.type_string() }}) as subject_type,
            cast(subject_id as {{ dbt.type_string() }}) as subject_id,
            cast(subject_name as {{ dbt.type_string() }}) as subject_name,
            cast(category as {{ dbt.type_string() }}) as category,
            cast(cancel_reason as {{ dbt.type_string() }}) as cancel_reason,
            cast(cancel_reason_description as {{ dbt.type_string() }})
                as cancel_reason_description,
            cast(is_cancel_reason_addressable as {{ dbt.type_boolean() }})
                as is_cancel_reason_addressable,
            cast(is_suppressed as {{ dbt.type_boolean() }}) as is_suppressed,
            cast(occurred_at as {{ dbt.type_timestamp() }}) as occurred_at,
            cast(fired_at as {{ dbt.type_timestamp() }}) as fired_at
        from {{ relation }}
    {%- else -%}
        select
            cast(null as {{ dbt.type_string() }}) as trigger_id,
            cast(null as {{ dbt.type_string() }}) as user_id,
            cast(null as {{ dbt.type_string() }}) as scenario,
            cast(null as {{ dbt.type_string() }}) as subject_type,
            cast(null as {{ dbt.type_string() }}) as subject_id,
            cast(null as {{ dbt.type_string() }}) as subject_name,
            cast(null as {{ dbt.type_string() }}) as category,
            cast(null as {{ dbt.type_string() }}) as cancel_reason,
            cast(null as {{ dbt.type_string() }}) as cancel_reason_description,
            cast(null as {{ dbt.type_boolean() }}) as is_cancel_reason_addressable,
            cast(null as {{ dbt.type_boolean() }}) as is_suppressed,
            cast(null as {{ dbt.type_timestamp() }}) as occurred_at,
            cast(null as {{ dbt.type_timestamp() }}) as fired_at
        where 1 = 0
    {%- endif -%}
{%- endmacro %}
