-- The CRM's contact list: every user who may receive marketing (consent given,
-- no deletion request, not a pseudonym left by one), with what campaigns
-- segment on. Only the columns of the export contract (docs/crm-exports.md):
-- no e-mail, country or device here; the CRM joins its own profile on user_id.
with

users as (

    select * from {{ ref('users') }}

),

lifecycle as (

    select * from {{ ref('user_lifecycle') }}

),

segments as (

    select * from {{ ref('user_segments') }}

),

plays as (

    select * from {{ ref('plays') }}

),

titles as (

    select * from {{ ref('titles') }}

),

user_clusters as (

    select * from {{ source('ml', 'user_taste_clusters') }}

),

churn as (

    select * from {{ source('ml', 'churn_risk') }}

),

recommendations as (

    select * from {{ source('ml', 'recommendations') }}

),

deleted_users as (

    select * from {{ source('privacy', 'deleted_users') }}

),

contactable as (

    select users.*
    from users
    left join deleted_users
        on users.user_id = deleted_users.pseudonym
    where
        users.is_contactable
        and deleted_users.pseudonym is null

),

-- The title the user spent most time on in valid plays (latest on a tie).
title_time as (

    select
        user_id,
        title_id,
        sum(played_s) as played_s,
        max(started_at) as last_played_at
    from plays
    where is_valid_play
    group by user_id, title_id

),

favourite_titles as (

    select
        user_id,
        title_id,
        row_number() over (
            partition by user_id
            order by played_s desc, last_played_at desc, title_id asc
        ) as favourite_rank
    from title_time

),

recommendation_counts as (

    select
        user_id,
        count(*) as recommendation_count
    from recommendations
    group by user_id

),

final as (

    select
        -- ids
        contactable.user_id,

        -- descriptive
        lifecycle.lifecycle_stage,
        contactable.subscription_status,
        segments.highest_segment,
        segments.fan_categories,
        segments.hardcore_fan_categories,
        segments.top_category,
        segments.top_categories,
        user_clusters.cluster_id as taste_cluster_id,
        user_clusters.cluster_name as taste_cluster_name,
        cast(churn.churn_risk as {{ ottp.type_double() }}) as churn_risk,
        churn.risk_band as churn_risk_band,
        favourite_titles.title_id as favourite_title_id,
        titles.title_name as favourite_title_name,

        -- numerics
        segments.titles_watched,
        lifecycle.valid_play_count,
        segments.fan_category_count,
        segments.hardcore_fan_category_count,
        coalesce(recommendation_counts.recommendation_count, 0) as recommendation_count,
        segments.pauses_per_hour_watched,

        -- timestamps
        contactable.signed_up_at,
        contactable.last_active_at

    from contactable
    inner join lifecycle
        on contactable.user_id = lifecycle.user_id
    inner join segments
        on contactable.user_id = segments.user_id
    left join user_clusters
        on contactable.user_id = user_clusters.user_id
    left join churn
        on contactable.user_id = churn.user_id
    left join favourite_titles
        on
            contactable.user_id = favourite_titles.user_id
            and favourite_titles.favourite_rank = 1
    left join titles
        on favourite_titles.title_id = titles.title_id
    left join recommendation_counts
        on contactable.user_id = recommendation_counts.user_id

),

-- The export contract's types on every engine (enforced: _exports__models.yml).
contracted as (

    select
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(lifecycle_stage as {{ dbt.type_string() }}) as lifecycle_stage,
        cast(subscription_status as {{ dbt.type_string() }}) as subscription_status,
        cast(highest_segment as {{ dbt.type_string() }}) as highest_segment,
        cast(fan_categories as {{ dbt.type_string() }}) as fan_categories,
        cast(hardcore_fan_categories as {{ dbt.type_string() }}) as hardcore_fan_categories,
        cast(top_category as {{ dbt.type_string() }}) as top_category,
        cast(top_categories as {{ dbt.type_string() }}) as top_categories,
        cast(taste_cluster_id as {{ dbt.type_bigint() }}) as taste_cluster_id,
        cast(taste_cluster_name as {{ dbt.type_string() }}) as taste_cluster_name,
        cast(churn_risk as {{ ottp.type_double() }}) as churn_risk,
        cast(churn_risk_band as {{ dbt.type_string() }}) as churn_risk_band,
        cast(favourite_title_id as {{ dbt.type_string() }}) as favourite_title_id,
        cast(favourite_title_name as {{ dbt.type_string() }}) as favourite_title_name,
        cast(titles_watched as {{ dbt.type_bigint() }}) as titles_watched,
        cast(valid_play_count as {{ dbt.type_bigint() }}) as valid_play_count,
        cast(fan_category_count as {{ dbt.type_bigint() }}) as fan_category_count,
        cast(hardcore_fan_category_count as {{ dbt.type_bigint() }}) as hardcore_fan_category_count,
        cast(recommendation_count as {{ dbt.type_bigint() }}) as recommendation_count,
        cast(pauses_per_hour_watched as {{ ottp.type_double() }}) as pauses_per_hour_watched,
        cast(signed_up_at as {{ dbt.type_timestamp() }}) as signed_up_at,
        cast(last_active_at as {{ dbt.type_timestamp() }}) as last_active_at
    from final

),

-- The row hash the sync compares to find changed rows (macros/row_hash.sql).
hashed as (

    select
        *,
        {{ ottp.row_hash() }} as _row_hash
    from contracted

)

select * from hashed
