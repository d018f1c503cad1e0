{#
    The identify calls the real-time server stored (raw.identities, loaded from
    the identity landing files by ottp.ingest.identities: one row per messageId),
    as a subquery. Without the live path the table does not exist and the
    subquery is empty, so builds without it keep working. Read through the
    catalog rather than declared as a source, like raw.live_triggers.
#}
{% macro identities() -%}
    {%- set relation = none -%}
    {%- if execute -%}
        {%- set relation = adapter.get_relation(
            database=(none if target.type == 'spark' else target.database),
            schema='raw',
            identifier='identities',
        ) -%}
    {%- endif -%}
    {%- if relation is not none -%}
        select
            cast(message_id as {{ dbt.type_string() }}) as message_id,
            cast(user_id as {{ dbt.type_string() }}) as user_id,
            cast(device_id as {{ dbt.type_string() }}) as device_id,
            cast(identified_at as {{ dbt.type_timestamp() }}) as identified_at
        from {{ relation }}
    {%- else -%}
        select
            cast(null as {{ dbt.type_string() }}) as message_id,
            cast(null as {{ dbt.type_string() }}) as user_id,
            cast(null as {{ dbt.type_string() }}) as device_id,
            cast(null as {{ dbt.type_timestamp() }}) as identified_at
        where 1 = 0
    {%- endif -%}
{%- endmacro %}
