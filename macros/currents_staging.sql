{#- Staging of one Currents event type, generated from the catalogue (macros/currents_catalogue.sql). -#}

{% macro stg_currents_event(event_type) -%}
    {%- set event = currents_event(event_type) -%}
    {%- set field_names = event.fields | map(attribute=0) | list -%}
    {%- set top_level = ['id', 'user_id', 'external_user_id', 'app_group_id', 'time'] -%}
    {%- set string_type = cs_type_string() -%}
select
    cast(id as {{ string_type }}) as currents_id,
    cast(user_id as {{ string_type }}) as braze_user_id,
    cast(external_user_id as {{ string_type }}) as external_user_id,
    {#- canvas.experimentstep.* carry no workspace id -#}
    cast({{ 'app_group_id' if 'app_group_id' in field_names else 'null' }} as {{ string_type }}) as app_group_id,
    {{ cs_epoch_to_timestamp(cs_quote('time')) }} as event_timestamp,
    cast({{ cs_quote('time') }} as {{ cs_type_bigint() }}) as event_time_unix,
    {%- for field in event.fields if field[0] not in top_level %}
        {{ cs_quote(field[0]) }},
    {%- endfor %}
    {{ segment_context_json(event) }} as segment_context_json,
    {{ segment_properties_json(event) }} as segment_properties_json,
    _file_id as file_id,
    _row_in_file as row_in_file,
    _source_file as source_file,
    _integration_id as integration_id,
    _cluster as {{ cs_quote('cluster') }},
    _date_hour as date_hour,
    _schema_id as schema_id,
    _loaded_at as loaded_at,
    coalesce(_is_test_event, false) as is_test_event,
    '{{ event.event_type }}' as currents_event_type
from {{ source('currents', event.table_name) }}
{%- endmacro %}

{#- One branch per type: the columns every landed event shares, plus the Segment-shaped parts. -#}
{% macro currents_landed_events_union(where_sql=none) -%}
    {%- set string_type = cs_type_string() -%}
    {%- for event in currents_catalogue() %}
        {%- set field_names = event.fields | map(attribute=0) | list %}
        {%- set shared_columns = [] %}
        {%- for shared in currents_shared_fields() %}
            {%- do shared_columns.append(
                'cast(' ~ (shared if shared in field_names else 'null') ~ ' as ' ~ string_type ~ ') as ' ~ shared
            ) %}
        {%- endfor %}
select
    currents_id,
    app_group_id,
    currents_event_type,
    '{{ event.family }}' as family,
    '{{ event.segment_event }}' as event,
    braze_user_id,
    external_user_id,
    event_timestamp,
    {{ shared_columns | join(',\n    ') }},
    segment_context_json,
    segment_properties_json,
    file_id,
    row_in_file,
    source_file,
    integration_id,
    date_hour,
    loaded_at,
    is_test_event
from {{ ref('stg_currents__' ~ event.table_name) }}
        {%- if where_sql %}
where {{ where_sql }}
        {%- endif %}
        {%- if not loop.last %}
union all
        {%- endif %}
    {%- endfor %}
{%- endmacro %}

{#- A Segment family mart: the de-duplicated events of one family as track calls. -#}
{% macro segment_family_track_calls(family) -%}
with events as (
    select * from {{ ref('int_currents__deduplicated_events') }}
    where family = '{{ family }}'
),

track_calls as (
    select
        currents_id as message_id,
        'track' as type,
        event,
        external_user_id as user_id,
        braze_user_id as anonymous_id,
        event_timestamp,
        {{ cs_iso_timestamp('event_timestamp') }} as segment_timestamp,
        segment_context_json as context_json,
        segment_properties_json as properties_json,
        family,
        currents_event_type,
        currents_id,
        app_group_id,
        integration_id,
        source_file,
        file_id,
        row_in_file,
        date_hour,
        loaded_at,
        is_test_event
    from events
),

payloads as (
    select
        *,
        {{ segment_track_call_json('message_id', 'event', 'user_id', 'anonymous_id', 'segment_timestamp', 'context_json', 'properties_json') }} as payload_json
    from track_calls
)

select
    message_id,
    type,
    event,
    user_id,
    anonymous_id,
    event_timestamp,
    segment_timestamp,
    context_json,
    properties_json,
    payload_json,
    {{ cs_byte_length('payload_json') }} as payload_bytes,
    family,
    currents_event_type,
    currents_id,
    app_group_id,
    integration_id,
    source_file,
    file_id,
    row_in_file,
    date_hour,
    loaded_at,
    is_test_event
from payloads
{%- endmacro %}

{#- A catalogue mapping dict back in the seed's `key=value;key=value` spelling. -#}
{% macro cs_catalogue_pairs(mapping) -%}
    {%- set items = [] -%}
    {%- for key, value in mapping.items() -%}
        {%- do items.append(key ~ '=' ~ value) -%}
    {%- endfor -%}
    {{- items | join(';') -}}
{%- endmacro %}
