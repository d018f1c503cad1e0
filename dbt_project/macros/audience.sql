{#
    The pseudonyms that replaced deleted users' ids (raw.deleted_users, written by
    ottp.sync.pseudonymise_deleted_users), as a subquery of (pseudonym,
    deletion_requested_at). Before the first pseudonymisation pass the table does
    not exist yet and the subquery is empty. Read through the catalog rather than
    declared as a source: the pass runs after the models it rewrites, so a source
    here would make Dagster's asset graph a cycle.
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
        select pseudonym, deletion_requested_at from {{ relation }}
    {%- else -%}
        select
            cast(null as {{ dbt.type_string() }}) as pseudonym,
            cast(null as {{ dbt.type_timestamp() }}) as deletion_requested_at
        where 1 = 0
    {%- endif -%}
{%- endmacro %}
