{#- Retention curve columns: the share of plays whose furthest position
    reached each 10% of the title. Averages of integer flags: a decimal 1.0
    would average to 5 decimal digits on Spark. -#}
{% macro retention_curve_columns(furthest_pct_column, reached_end_column) -%}
    {%- for step in range(1, 10) %}
    avg({{ ottp.flag(furthest_pct_column ~ ' >= ' ~ (step / 10)) }})
        as retention_{{ step * 10 }}_pct,
    {%- endfor %}
    avg({{ ottp.flag(reached_end_column) }}) as retention_100_pct
{%- endmacro %}


{#- The play metrics of title_engagement (per title) and
    title_engagement_daily (per title and day: by_day adds play_date as
    activity_date to the grain), written once. Each is a select over the
    plays mart (plays) or the pauses mart (pauses). Sums and averages of
    doubles are exact (exact_sum, exact_avg): a day recomputed alone gives the
    bits it gets among all days. -#}
{% macro title_play_metrics(plays, by_day=false) -%}
    select
        title_id,
        {%- if by_day %}
        play_date as activity_date,
        {%- endif %}
        count(*) as play_count,
        sum({{ ottp.flag('is_valid_play') }}) as valid_play_count,
        count(distinct user_id) as viewer_count,
        sum({{ ottp.flag('is_complete') }}) as completed_play_count,
        {{ ottp.exact_sum('played_s') }} as played_s,
        {{ ottp.exact_avg('furthest_pct') }} as avg_percent_watched,
        sum({{ ottp.flag('rewatched_s > 0') }}) as rewatched_play_count,
        sum(pause_count) as pause_count,
        sum({{ ottp.flag('pause_count > 0') }}) as paused_play_count,
        {{ ottp.retention_curve_columns('furthest_pct', 'has_reached_100_pct') }}
    from {{ plays }}
    group by title_id{{ ', play_date' if by_day }}
{%- endmacro %}


{#- Each play adds its rewatched seconds to its most rewatched scene;
    scene_rank 1 is the grain's most rewatched one. -#}
{% macro title_rewatched_scenes(plays, by_day=false) -%}
    {%- set grain = 'title_id, play_date' if by_day else 'title_id' %}
    select
        title_id,
        {%- if by_day %}
        play_date as activity_date,
        {%- endif %}
        most_rewatched_scene_s as scene_start_s,
        {{ ottp.exact_sum('rewatched_s') }} as rewatched_s,
        row_number() over (
            partition by {{ grain }}
            order by {{ ottp.exact_sum('rewatched_s') }} desc, most_rewatched_scene_s
        ) as scene_rank
    from {{ plays }}
    where most_rewatched_scene_s is not null
    group by {{ grain }}, most_rewatched_scene_s
{%- endmacro %}


{#- Pauses by the rewatch_scene_s bucket of the title they stopped it in;
    scene_rank 1 is the grain's most paused one. -#}
{% macro title_paused_scenes(pauses, by_day=false) -%}
    {%- set grain = 'title_id, play_date' if by_day else 'title_id' %}
    select
        title_id,
        {%- if by_day %}
        play_date as activity_date,
        {%- endif %}
        scene_start_s,
        count(*) as pause_count,
        count(distinct playback_id) as paused_play_count,
        row_number() over (
            partition by {{ grain }}
            order by count(*) desc, count(distinct playback_id) desc, scene_start_s
        ) as scene_rank
    from {{ pauses }}
    group by {{ grain }}, scene_start_s
{%- endmacro %}
