-- The catalog as the marts see it: one row per title of the latest snapshot.
with

titles as (

    select * from {{ ref('int_titles') }}

)

select * from titles
