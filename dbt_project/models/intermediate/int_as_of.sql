-- The reference time of the marts: the as_of var, or the end of the latest
-- activity (sessions cover navigation, player and interest events), so a
-- rebuild on the same data gives the same marts.
with

{% if var('as_of') is none %}

as_of as (

    -- before any event is loaded, the epoch keeps the marts buildable
    select coalesce(max(ended_at), {{ ottp.epoch_start() }}) as as_of_at
    from {{ ref('int_sessions') }}

)

{% else %}

as_of as (

    select cast('{{ var("as_of") }}' as {{ dbt.type_timestamp() }}) as as_of_at

)

{% endif %}

select
    as_of_at,
    cast(as_of_at as date) as as_of_date
from as_of
