{#
    The pseudonyms that replaced deleted users' ids (raw.deleted_users, written by
    ottp.crm.sync.pseudonymise_deleted_users), as a subquery of (pseudonym,
    deletion_requested_at). Before the first pseudonymisation pass the table does
    not exist yet and the subquery is empty; where the table has no
    deletion_requested_at (the Spark loader's raw.deleted_users), it is null.
    Read through the catalog rather than declared as a source: the pass runs
    after the models it rewrites, so a source here would make Dagster's asset
    graph a cycle.
#}
{% macro deleted_user_pseudonyms() -%}
    {%- set relation = none -%}
    {%- if execute -%}
        {%- set relation = adapter.get_relation(
            database=(none if target.type == 'spark' else target.database),
            schema='raw',
            identifier='deleted_users',
        ) -%}
    {%- endif -%}
    {%- if relation is not none -%}
        {%- set columns = adapter.get_columns_in_relation(relation)
            | map(attribute='name') | map('lower') | list -%}
        select
            pseudonym,
            {% if 'deletion_requested_at' in columns -%}
                deletion_requested_at
            {%- else -%}
                cast(null as {{ dbt.type_timestamp() }}) as deletion_requested_at
            {%- endif %}
        from {{ relation }}
    {%- else -%}
        select
            cast(null as {{ dbt.type_string() }}) as pseudonym,
            cast(null as {{ dbt.type_timestamp() }}) as deletion_requested_at
        where 1 = 0
    {%- endif -%}
{%- endmacro %}
