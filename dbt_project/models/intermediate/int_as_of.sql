-- The reference time of the marts: the as_of var, or the latest collector
-- time in the data. Client clocks can be skewed, so received_at is used.
with

{% if var('as_of') is none %}

latest_received as (

    select max(received_at) as received_at from {{ ref('stg_player_events') }}
    union all
    select max(received_at) from {{ ref('stg_navigation_events') }}
    union all
    select max(received_at) from {{ ref('stg_interest_events') }}
    union all
    select max(received_at) from {{ ref('stg_account_events') }}
    union all
    select max(received_at) from {{ ref('stg_survey_responses') }}

),

as_of as (

    select max(received_at) as as_of_at
    from latest_received

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
