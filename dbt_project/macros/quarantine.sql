{#- The staging models' input assumptions, written once.

    Each staging model of raw.events takes the event types of its family
    (event_families) and assumes what its own and its descendants' tests
    assume of each row (input_assumptions): a required field is present, a
    number is inside its bounds, a text cast to a number or a boolean holds
    one. The loader's rules (ottp/contract/rules.py) guarantee these for every
    line it loads now; a row loaded before a rule existed, or written into
    raw.events by other means, may still break one.

    Such a row is kept out of its staging model (meets_input_assumptions, the
    staging filter) and recorded in stg_quarantined_events with the first
    assumption it breaks (quarantine_assumptions, quarantine_assumption_id):
    the build goes on, and raw.events = staged rows + quarantined rows. The
    catalog likewise: title_assumptions, stg_titles, stg_quarantined_titles.
    event_families is the schema's event_type enum by family
    (ottp.contract.rules.FAMILIES; tests/test_input_assumptions.py compares).

    Each assumption: rule_id (the loader rule that guarantees it, or the
    model's own rule where the contract says nothing), reason_code (the rule's
    reason code), reason (what is wrong, in words), column (the staging column
    concerned) and violated (a condition over raw.events, true when broken;
    null counts as not broken). tests/test_input_assumptions.py checks the
    rule ids against the loader's rules and against the metas of the dbt
    tests. -#}

{% macro event_families() -%}
    {{ return({
        'stg_player_events': [
            'play_start', 'heartbeat', 'pause', 'resume', 'seek', 'complete', 'stop',
        ],
        'stg_navigation_events': ['page_view', 'rail_impression', 'title_click', 'search'],
        'stg_interest_events': ['like', 'dislike', 'rating', 'add_to_watchlist', 'share'],
        'stg_account_events': [
            'signup', 'subscribe', 'cancel', 'reactivate', 'consent_update',
            'deletion_request',
        ],
        'stg_survey_responses': ['survey_response'],
    }) }}
{%- endmacro %}


{#- The largest position or duration the models take, in seconds (the
    contract's maximum on position_s, duration_s and from_position_s). -#}
{% macro max_position_s() -%}
    {{ return(86400) }}
{%- endmacro %}


{% macro input_assumptions(model) -%}
    {%- set max_s = ottp.max_position_s() -%}
    {#- raw.events declares these not null; on an engine without the
        constraint the staging filter still holds them -#}
    {%- set common = [
        ottp.required_field('event_id'),
        ottp.required_field('device_id'),
        ottp.required_field('occurred_at'),
    ] -%}
    {%- set player_numbers = [] -%}
    {%- for column in ['position_s', 'duration_s'] -%}
        {%- do player_numbers.append(ottp.required_field(column)) -%}
    {%- endfor -%}
    {%- for column in ['position_s', 'from_position_s'] -%}
        {%- do player_numbers.append({
            'rule_id': column ~ '.minimum', 'reason_code': 'invalid_value',
            'reason': column ~ ' below 0', 'column': column,
            'violated': column ~ ' < 0'}) -%}
    {%- endfor -%}
    {%- do player_numbers.append({
        'rule_id': 'duration_s.exclusiveMinimum', 'reason_code': 'invalid_value',
        'reason': 'duration_s not above 0', 'column': 'duration_s',
        'violated': 'duration_s <= 0'}) -%}
    {%- for column in ['position_s', 'duration_s', 'from_position_s'] -%}
        {%- do player_numbers.append({
            'rule_id': column ~ '.maximum', 'reason_code': 'invalid_value',
            'reason': column ~ ' above ' ~ max_s, 'column': column,
            'violated': column ~ ' > ' ~ max_s}) -%}
    {%- endfor -%}

    {%- set rating = ottp.json_get_text('properties', 'rating') -%}
    {%- set rating_number = ottp.number_or_null(rating) -%}
    {%- set opt_in = ottp.json_get_text('properties', 'marketing_opt_in') -%}
    {%- set rank = ottp.json_get_text('properties', 'rank') -%}

    {%- set assumptions = {
        'stg_player_events': common + [
            ottp.required_field('user_id'),
            ottp.required_field('playback_id'),
            ottp.required_field('title_id'),
        ] + player_numbers,
        'stg_navigation_events': common + [
            {'rule_id': 'properties.rank.type', 'reason_code': 'wrong_type',
             'reason': 'properties.rank is not a whole number', 'column': 'rail_rank',
             'violated': rank ~ ' is not null and not '
                         ~ ottp.matches_pattern(rank, '-?[0-9]{1,9}')},
        ],
        'stg_interest_events': common + [
            ottp.required_field('user_id'),
            ottp.required_field('title_id'),
            {'rule_id': 'properties.rating.required', 'reason_code': 'missing_field',
             'reason': 'properties.rating is null', 'column': 'rating',
             'violated': "event_type = 'rating' and " ~ rating ~ ' is null'},
            {'rule_id': 'properties.rating.type', 'reason_code': 'wrong_type',
             'reason': 'properties.rating is not an integer', 'column': 'rating',
             'violated': "event_type = 'rating' and not "
                         ~ ottp.matches_pattern(rating, '-?[0-9]+')},
            {'rule_id': 'properties.rating.minimum', 'reason_code': 'invalid_value',
             'reason': 'properties.rating below 1', 'column': 'rating',
             'violated': "event_type = 'rating' and " ~ rating_number ~ ' < 1'},
            {'rule_id': 'properties.rating.maximum', 'reason_code': 'invalid_value',
             'reason': 'properties.rating above 5', 'column': 'rating',
             'violated': "event_type = 'rating' and " ~ rating_number ~ ' > 5'},
        ],
        'stg_account_events': common + [
            ottp.required_field('user_id'),
            {'rule_id': 'properties.marketing_opt_in.required',
             'reason_code': 'missing_field',
             'reason': 'properties.marketing_opt_in is null',
             'column': 'is_marketing_opt_in',
             'violated': "event_type = 'consent_update' and " ~ opt_in ~ ' is null'},
            {'rule_id': 'properties.marketing_opt_in.type', 'reason_code': 'wrong_type',
             'reason': 'properties.marketing_opt_in is not true or false',
             'column': 'is_marketing_opt_in',
             'violated': "event_type = 'consent_update' and "
                         ~ opt_in ~ " not in ('true', 'false')"},
        ],
        'stg_survey_responses': common + [
            ottp.required_field('user_id'),
            ottp.required_property('survey_id'),
            ottp.required_property('question_id'),
        ],
    } -%}
    {{ return(assumptions[model]) }}
{%- endmacro %}


{% macro required_field(column) -%}
    {{ return({'rule_id': column ~ '.required', 'reason_code': 'missing_field',
               'reason': column ~ ' is null', 'column': column,
               'violated': column ~ ' is null'}) }}
{%- endmacro %}


{% macro required_property(key) -%}
    {{ return({'rule_id': 'properties.' ~ key ~ '.required', 'reason_code': 'missing_field',
               'reason': 'properties.' ~ key ~ ' is null', 'column': key,
               'violated': ottp.json_get_text('properties', key) ~ ' is null'}) }}
{%- endmacro %}


{#- The staging filter: the model's event types, and no assumption broken
    (true when none is true; a null counts as not broken). One coalesce over
    the whole disjunction: on DuckDB about half the cost of one per term. -#}
{% macro meets_input_assumptions(model) -%}
    event_type in ({{ ottp.quoted_list(ottp.event_families()[model]) }})
    and not coalesce(
        {%- for assumption in ottp.input_assumptions(model) %}
        ({{ assumption.violated }}){{ ' or' if not loop.last }}
        {%- endfor %},
        false
    )
{%- endmacro %}


{#- The catalog's assumptions (stg_titles), over raw.titles as titles left
    joined to the categories seed as known_categories: a title's category
    must be one of the seed's (titles.category.seed: both title loaders check
    it against the same seed file; a row loaded before they did is held here). -#}
{% macro title_assumptions() -%}
    {%- set assumptions = [] -%}
    {%- for column in ['title_id', 'category', 'duration_s'] -%}
        {%- do assumptions.append({
            'rule_id': 'titles.' ~ column ~ '.required', 'reason_code': 'missing_field',
            'reason': column ~ ' is null', 'column': column,
            'violated': 'titles.' ~ column ~ ' is null'}) -%}
    {%- endfor -%}
    {%- do assumptions.append({
        'rule_id': 'titles.kind.enum', 'reason_code': 'invalid_value',
        'reason': 'kind is not movie or episode', 'column': 'title_kind',
        'violated': "titles.kind not in ('movie', 'episode')"}) -%}
    {%- do assumptions.append({
        'rule_id': 'titles.category.seed', 'reason_code': 'invalid_value',
        'reason': 'category is not in the categories seed', 'column': 'category',
        'violated': 'known_categories.category is null'}) -%}
    {{ return(assumptions) }}
{%- endmacro %}


{#- The catalog filter of stg_titles. -#}
{% macro meets_title_assumptions() -%}
    not coalesce(
        {%- for assumption in ottp.title_assumptions() %}
        ({{ assumption.violated }}){{ ' or' if not loop.last }}
        {%- endfor %},
        false
    )
{%- endmacro %}


{#- Every assumption of every staging model of `relation` (events or
    titles), numbered in order (1, 2, ...); for events also 0: an event type
    no staging model takes (the contract's enum). `applies` is the event
    types an assumption concerns, as a condition. -#}
{% macro quarantine_assumptions(relation='events') -%}
    {%- set rows = [] -%}
    {%- if relation == 'titles' -%}
        {%- for assumption in ottp.title_assumptions() -%}
            {%- do rows.append(dict(assumption, assumption_id=loop.index,
                                    staging_model='stg_titles', applies=none)) -%}
        {%- endfor -%}
    {%- else -%}
        {%- do rows.append({
            'assumption_id': 0, 'staging_model': none, 'rule_id': 'event_type.enum',
            'reason_code': 'unknown_event_type',
            'reason': 'no staging model takes this event type',
            'column': 'event_type', 'applies': none, 'violated': none}) -%}
        {%- for model, event_types in ottp.event_families().items() -%}
            {%- for assumption in ottp.input_assumptions(model) -%}
                {%- do rows.append(dict(assumption, assumption_id=rows | length,
                    staging_model=model,
                    applies='event_type in (' ~ ottp.quoted_list(event_types) ~ ')')) -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(rows) }}
{%- endmacro %}


{#- The first assumption a raw row breaks (its assumption_id), else null.
    Events are sorted by family first, so a row is checked against its own
    staging model's assumptions only. -#}
{% macro quarantine_assumption_id(relation='events') -%}
    {%- set rows = ottp.quarantine_assumptions(relation) -%}
    {%- if relation == 'titles' -%}
        {{ ottp.first_broken(rows) }}
    {%- else -%}
    case
        {%- for model, event_types in ottp.event_families().items() %}
        when event_type in ({{ ottp.quoted_list(event_types) }}) then
            {{ ottp.first_broken(rows | selectattr('staging_model', 'equalto', model) | list) }}
        {%- endfor %}
        else 0
    end
    {%- endif -%}
{%- endmacro %}


{% macro first_broken(rows) -%}
    case
        {%- for row in rows %}
        when {{ row.violated }} then {{ row.assumption_id }}
        {%- endfor %}
    end
{%- endmacro %}


{#- The assumptions as rows (one select per assumption), for the quarantine's
    reason columns. -#}
{% macro quarantine_assumption_rows(relation='events') -%}
    {%- for row in ottp.quarantine_assumptions(relation) %}
    select
        {{ row.assumption_id }} as assumption_id,
        {{ ottp.text_literal(row.staging_model) }} as staging_model,
        {{ ottp.text_literal(row.rule_id) }} as rule_id,
        {{ ottp.text_literal(row.reason_code) }} as reason_code,
        {{ ottp.text_literal(row.reason) }} as reason
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{%- endmacro %}


{% macro quoted_list(values) -%}
    {%- for value in values -%}
        '{{ value }}'{{ ', ' if not loop.last }}
    {%- endfor -%}
{%- endmacro %}


{% macro text_literal(value) -%}
    {%- if value is none -%}
        cast(null as {{ dbt.type_string() }})
    {%- else -%}
        cast('{{ value }}' as {{ dbt.type_string() }})
    {%- endif -%}
{%- endmacro %}


{#- A whole-text regular expression match; engines spell it differently.
    Patterns avoid backslashes (Spark's string literals would eat them). -#}
{% macro matches_pattern(expression, pattern) -%}
    {{ return(adapter.dispatch('matches_pattern', 'ottp')(expression, pattern)) }}
{%- endmacro %}

{% macro default__matches_pattern(expression, pattern) -%}
    ({{ expression }} ~ '^({{ pattern }})$')
{%- endmacro %}

{% macro duckdb__matches_pattern(expression, pattern) -%}
    regexp_full_match({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro spark__matches_pattern(expression, pattern) -%}
    ({{ expression }} rlike '^({{ pattern }})$')
{%- endmacro %}


{#- A text holding a decimal number as a double, else null (never a cast error). -#}
{% macro number_or_null(expression) -%}
    case
        when {{ ottp.matches_pattern(expression, '-?[0-9]+([.][0-9]*)?') }}
            then cast({{ expression }} as {{ ottp.type_double() }})
    end
{%- endmacro %}
